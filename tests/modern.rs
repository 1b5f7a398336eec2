//! MCP 2026-07-28 servers reached from a host that speaks 2025-11-25, with
//! default flags: the testbed in its modern mode (`Config::modern`), which checks
//! every header and `_meta` the revision requires and refuses `initialize`.

mod common;

use common::{call, text, Proxy};
use serde_json::{json, Value};
use std::time::Duration;
use testbed::{Config, Testbed};

async fn modern(config: Config) -> Testbed {
    Testbed::start(Config {
        modern: true,
        ..config
    })
    .await
    .unwrap()
}

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_initializes_and_calls_a_modern_server_with_default_flags() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    let init = p.initialize("2025-11-25").await;
    let result = &init["result"];
    assert_eq!(result["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(result["serverInfo"]["name"], "mcp-testbed-modern");
    assert_eq!(result["instructions"], "A 2026-07-28 test server.");
    assert!(result["capabilities"]["tools"].is_object());

    // What 2026-07-28 removed is answered by the proxy.
    p.send(json!({"jsonrpc":"2.0","id":"p","method":"ping"}))
        .await;
    let (pong, _) = p.recv_response(&json!("p")).await;
    assert_eq!(pong["result"], json!({}));
    p.send(
        json!({"jsonrpc":"2.0","id":"lv","method":"logging/setLevel","params":{"level":"debug"}}),
    )
    .await;
    let (level, _) = p.recv_response(&json!("lv")).await;
    assert_eq!(level["result"], json!({}));

    p.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    let (tools, _) = p.recv_response(&json!(1)).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{tools}");

    p.send(call(2, "echo", json!({"text": "héllo\nworld"})))
        .await;
    let (echo, _) = p.recv_response(&json!(2)).await;
    assert_eq!(text(&echo), "héllo\nworld");
    p.send(json!({"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"test://a b"}}))
        .await;
    let (read, _) = p.recv_response(&json!(3)).await;
    assert_eq!(read["result"]["contents"][0]["text"], "contents", "{read}");
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0), "{stderr}");

    let requests = tb.requests();
    assert!(
        requests.iter().all(|r| r.method == "POST"),
        "no GET stream and no DELETE: {:?}",
        requests.iter().map(|r| &r.method).collect::<Vec<_>>()
    );
    // The listen stream (the server says its tool list may change) goes on the side.
    let requests: Vec<_> = requests
        .into_iter()
        .filter(|r| r.rpc_method().as_deref() != Some("subscriptions/listen"))
        .collect();
    let methods: Vec<String> = requests.iter().filter_map(|r| r.rpc_method()).collect();
    assert_eq!(
        methods,
        [
            "server/discover",
            "tools/list",
            "tools/call",
            "resources/read"
        ],
        "initialize, initialized, ping and setLevel never reach a 2026-07-28 server"
    );
    for r in &requests {
        assert_eq!(r.header("mcp-protocol-version"), Some("2026-07-28"));
        assert!(r.header("mcp-session-id").is_none());
        assert_eq!(r.header("mcp-method"), r.rpc_method().as_deref());
        let body = r.json().unwrap();
        let meta = &body["params"]["_meta"];
        assert_eq!(meta[META_VERSION], "2026-07-28", "{body}");
        assert_eq!(
            meta["io.modelcontextprotocol/clientCapabilities"],
            json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}})
        );
        assert!(meta["io.modelcontextprotocol/clientInfo"]["name"]
            .as_str()
            .unwrap()
            .starts_with("test-host"));
    }
    let after_level = &requests[1].json().unwrap()["params"]["_meta"];
    assert_eq!(after_level["io.modelcontextprotocol/logLevel"], "debug");
    assert_eq!(requests[2].header("mcp-name"), Some("echo"));
    assert_eq!(requests[3].header("mcp-name"), Some("test://a b"));
    // Every answer was a result: the server found nothing to refuse.
    assert!(
        requests.iter().all(|r| r.status == Some(200)),
        "{requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_the_first_request_whatever_it_says_is_asked_again() {
    let tb = modern(Config {
        modern_refuse_first: true,
        ..Config::default()
    })
    .await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    let init = p.initialize("2025-06-18").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    p.send(call(1, "add", json!({"a": 2, "b": 3}))).await;
    let (sum, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&sum), "5");
    p.close().await;
    let statuses: Vec<Option<u16>> = tb
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() != Some("subscriptions/listen"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [Some(400), Some(200), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_is_probed_once_then_remembered_and_a_modern_one_answers_its_errors() {
    // Legacy: the probe costs one request on the first start only.
    let tb = Testbed::start(Config::default()).await.unwrap();
    let config = std::env::temp_dir().join(format!("mcp-remote-era-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&config);
    let env = [("MCP_REMOTE_CONFIG_DIR", config.to_str().unwrap())];
    for start in 0..2 {
        tb.clear_requests();
        let mut p = Proxy::spawn_with_env(&[&tb.url()], &env);
        p.initialize("2025-11-25").await;
        p.send(call(1, "echo", json!({"text": "x"}))).await;
        let (echo, _) = p.recv_response(&json!(1)).await;
        assert_eq!(text(&echo), "x");
        p.close().await;
        let posted: Vec<String> = tb
            .requests()
            .iter()
            .filter_map(|r| r.rpc_method())
            .collect();
        let probes = posted.iter().filter(|m| *m == "server/discover").count();
        assert_eq!(
            probes,
            if start == 0 { 1 } else { 0 },
            "start {start}: {posted:?}"
        );
        assert_eq!(posted.iter().filter(|m| *m == "initialize").count(), 1);
    }
    let remembered: Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(config.join("mcp-remote-v1"))
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with("_transport.json"))
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(remembered["era"], "legacy");
    let _ = std::fs::remove_dir_all(&config);

    // Modern: a tool the server does not know is the server's own error.
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(call(5, "nope", json!({}))).await;
    let (unknown, _) = p.recv_response(&json!(5)).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    p.send(json!({"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{}}))
        .await;
    let (missing, _) = p.recv_response(&json!(6)).await;
    assert_eq!(missing["error"]["code"], -32601, "{missing}");
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_request_closes_its_stream_and_posts_nothing() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(call(9, "slow", json!({"ms": 20_000}))).await;
    assert!(
        tb.wait_for(
            |r| r
                .iter()
                .any(|r| r.rpc_method().as_deref() == Some("tools/call")),
            Duration::from_secs(5)
        )
        .await
    );
    p.send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"user"}}))
        .await;
    let mut cancelled = false;
    for _ in 0..50 {
        if tb.modern_cancelled() == 1 {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cancelled, "the server saw the request's connection close");
    p.assert_quiet(Duration::from_millis(300)).await;
    p.send(call(10, "echo", json!({"text": "after"}))).await;
    let (after, _) = p.recv_response(&json!(10)).await;
    assert_eq!(text(&after), "after");
    p.close().await;
    let methods: Vec<String> = tb
        .requests()
        .iter()
        .filter_map(|r| r.rpc_method())
        .collect();
    assert!(
        !methods.iter().any(|m| m.starts_with("notifications/")),
        "{methods:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_arguments_go_as_headers_and_tools_with_invalid_annotations_are_left_out() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    let (tools, _) = p.recv_response(&json!(1)).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"regional"), "{names:?}");
    assert!(
        !names.contains(&"bad_header"),
        "an x-mcp-header on a number makes the tool invalid: {names:?}"
    );
    // The schema the host sees is the server's, annotations included.
    let regional = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "regional")
        .unwrap();
    assert_eq!(
        regional["inputSchema"]["properties"]["region"]["x-mcp-header"],
        "Region"
    );

    let args = json!({"region": " eu west ", "priority": 7, "verbose": false, "note": "n"});
    p.send(call(2, "regional", args)).await;
    let (seen, _) = p.recv_response(&json!(2)).await;
    assert_eq!(
        text(&seen),
        "mcp-param-priority=7;mcp-param-region==?base64?IGV1IHdlc3Qg?=;mcp-param-verbose=false",
        "{seen}"
    );
    p.send(call(3, "regional", json!({"region": null, "priority": 1})))
        .await;
    let (seen, _) = p.recv_response(&json!(3)).await;
    assert_eq!(
        text(&seen),
        "mcp-param-priority=1",
        "a null argument sends no header"
    );

    p.send(call(4, "bad_header", json!({"ratio": 0.5}))).await;
    let (refused, _) = p.recv_response(&json!(4)).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-mcp-header"));
    let (_, stderr) = p.close().await;
    assert!(
        stderr.contains("bad_header"),
        "the log names the tool left out"
    );
    let calls: Vec<String> = tb
        .requests()
        .iter()
        .filter_map(|r| r.json())
        .filter(|b| b["method"] == "tools/call")
        .map(|b| b["params"]["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        calls,
        ["regional", "regional"],
        "the invalid tool never reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_required_result_becomes_a_real_elicitation_and_the_request_goes_again() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(call(7, "confirm", json!({}))).await;
    // The host is asked, as a 2025-11-25 server would ask it.
    let ask = p.recv().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "Go ahead?");
    let ask_id = ask["id"].clone();
    p.send(json!({"jsonrpc":"2.0","id":ask_id,"result":{"action":"accept","content":{"confirmed":true}}}))
        .await;
    let (done, others) = p.recv_response(&json!(7)).await;
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(text(&done), "action=accept confirmed=Some(true)", "{done}");
    p.close().await;

    let rounds: Vec<Value> = tb
        .requests()
        .iter()
        .filter_map(|r| r.json())
        .filter(|b| b["method"] == "tools/call")
        .collect();
    assert_eq!(rounds.len(), 2, "{rounds:#?}");
    assert_ne!(
        rounds[0]["id"], rounds[1]["id"],
        "a new id for the new round"
    );
    assert!(rounds[0]["params"].get("inputResponses").is_none());
    assert_eq!(rounds[1]["params"]["requestState"], "state-1");
    assert_eq!(
        rounds[1]["params"]["inputResponses"]["ok"],
        json!({"action":"accept","content":{"confirmed":true}})
    );
    assert_eq!(rounds[1]["params"]["name"], "confirm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_elicitation_declines_and_a_cancelled_round_is_forgotten() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.send(
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"bare-host","version":"1"}}}),
    )
    .await;
    p.recv_response(&json!(0)).await;
    p.send(call(1, "confirm", json!({}))).await;
    let (done, others) = p.recv_response(&json!(1)).await;
    assert!(
        others.is_empty(),
        "nothing is asked of a host that cannot answer: {others:?}"
    );
    assert_eq!(text(&done), "action=decline confirmed=None");
    p.close().await;

    // A host that cancels while it is being asked gets no answer, and nothing goes on.
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    tb.clear_requests();
    p.send(call(2, "confirm", json!({}))).await;
    let ask = p.recv().await;
    assert_eq!(ask["method"], "elicitation/create");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2}}))
        .await;
    p.send(json!({"jsonrpc":"2.0","id":ask["id"],"result":{"action":"accept","content":{"confirmed":true}}}))
        .await;
    p.assert_quiet(Duration::from_millis(500)).await;
    p.close().await;
    let calls = tb
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("tools/call"))
        .count();
    assert_eq!(calls, 1, "the cancelled request is not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_sse_url_is_followed_to_its_successor_once_and_the_user_is_told() {
    for modern_server in [false, true] {
        let tb = Testbed::start(Config {
            retired_sse: true,
            modern: modern_server,
            ..Config::default()
        })
        .await
        .unwrap();
        let old = tb.sse_url();
        let mut p = Proxy::spawn(&[&old]);
        let init = p.initialize("2025-11-25").await;
        assert!(init.get("result").is_some(), "{init}");
        p.send(call(1, "echo", json!({"text": "moved"}))).await;
        let (echo, _) = p.recv_response(&json!(1)).await;
        assert_eq!(text(&echo), "moved");
        let (code, stderr) = p.close().await;
        assert_eq!(code, Some(0));
        assert!(
            stderr.contains(&format!("put {} in your MCP client's config", tb.url())),
            "{stderr}"
        );
        let gone = tb
            .requests()
            .iter()
            .filter(|r| r.status == Some(410))
            .count();
        assert_eq!(gone, 1, "the retired URL is asked once");
    }

    // A successor on another origin is not followed: the error names it.
    let tb = Testbed::start(Config {
        gone: Some("https://new.example.com/mcp".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.send(
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}),
    )
    .await;
    let (refused, _) = p.recv_response(&json!(0)).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("410 Gone") && message.contains("https://new.example.com/mcp"),
        "{refused}"
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notifications_come_through_subscriptions_listen() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    assert!(
        tb.wait_for(
            |r| r
                .iter()
                .any(|r| r.rpc_method().as_deref() == Some("subscriptions/listen")),
            Duration::from_secs(5)
        )
        .await,
        "the proxy listens once the host is initialized"
    );
    p.send(call(1, "change", json!({}))).await;
    let (told, notes) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&told), "told 1", "one listener, for tools");
    let mut seen = notes;
    if !seen
        .iter()
        .any(|n| n["method"] == "notifications/tools/list_changed")
    {
        seen.push(p.recv().await);
    }
    assert!(
        seen.iter()
            .any(|n| n["method"] == "notifications/tools/list_changed"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|n| n["method"] != "notifications/subscriptions/acknowledged"),
        "the acknowledgement is the proxy's"
    );

    // A resource subscription re-opens the stream with the new filter.
    p.send(json!({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"test://a b"}}))
        .await;
    let (sub, _) = p.recv_response(&json!(2)).await;
    assert_eq!(sub["result"], json!({}));
    let mut filters = Vec::new();
    for _ in 0..50 {
        filters = tb.listening();
        if filters.len() == 1 && filters[0]["resourceSubscriptions"] == json!(["test://a b"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(filters.len(), 1, "the old stream is closed: {filters:?}");
    assert_eq!(filters[0]["resourceSubscriptions"], json!(["test://a b"]));
    assert_eq!(filters[0]["toolsListChanged"], true);
    p.send(call(3, "change", json!({"uri": "test://a b"})))
        .await;
    let (told, mut notes) = p.recv_response(&json!(3)).await;
    assert_eq!(text(&told), "told 2");
    for _ in 0..2 {
        if notes.len() < 2 {
            notes.push(p.recv().await);
        }
    }
    let updated = notes
        .iter()
        .find(|n| n["method"] == "notifications/resources/updated")
        .unwrap_or_else(|| panic!("{notes:?}"));
    assert_eq!(updated["params"]["uri"], "test://a b");
    let (code, _) = p.close().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_is_sent_again_when_it_only_reads_and_errored_when_it_may_have_acted() {
    let tb = modern(Config {
        modern_break_first_list: true,
        ..Config::default()
    })
    .await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(json!({"jsonrpc":"2.0","id":"list","method":"tools/list"}))
        .await;
    let (tools, others) = p.recv_response(&json!("list")).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    assert!(others.is_empty(), "one answer: {others:?}");
    let lists: Vec<Value> = tb
        .requests()
        .iter()
        .filter_map(|r| r.json())
        .filter(|b| b["method"] == "tools/list")
        .collect();
    assert_eq!(lists.len(), 2, "sent again once");
    assert_ne!(lists[0]["id"], lists[1]["id"], "as a new request");

    p.send(call(5, "cut", json!({}))).await;
    let (broken, _) = p.recv_response(&json!(5)).await;
    let message = broken["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("may or may not have been executed"),
        "{broken}"
    );
    p.assert_quiet(Duration::from_millis(300)).await;
    p.close().await;
    let cuts = tb
        .requests()
        .iter()
        .filter_map(|r| r.json())
        .filter(|b| b["params"]["name"] == "cut")
        .count();
    assert_eq!(cuts, 1, "a tool call that may have acted is not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_mismatch_lists_the_tools_again_and_the_call_goes_once_more() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    p.recv_response(&json!(1)).await;
    // The server changed the tool's annotation since that list.
    p.send(call(2, "drift", json!({"v": "x"}))).await;
    let (done, _) = p.recv_response(&json!(2)).await;
    assert_eq!(text(&done), "v=x", "{done}");
    p.close().await;
    type Seen = (String, Option<u16>, Option<String>, Option<String>);
    let seen: Vec<Seen> = tb
        .requests()
        .iter()
        .filter(|r| matches!(r.rpc_method().as_deref(), Some("tools/list" | "tools/call")))
        .map(|r| {
            (
                r.rpc_method().unwrap(),
                r.status,
                r.header("mcp-param-old").map(str::to_owned),
                r.header("mcp-param-new").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("tools/list".into(), Some(200), None, None),
            ("tools/call".into(), Some(400), Some("x".into()), None),
            ("tools/list".into(), Some(200), None, None),
            ("tools/call".into(), Some(200), None, Some("x".into())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_of_2026_07_28_is_relayed_without_bridging() {
    let tb = modern(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.url()]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "modern-host", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    p.send(json!({"jsonrpc":"2.0","id":"d","method":"server/discover","params":{"_meta": meta}}))
        .await;
    let (discover, _) = p.recv_response(&json!("d")).await;
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"]),
        "the server's own answer: {discover}"
    );
    p.send(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"confirm","arguments":{},"_meta": meta}}),
    )
    .await;
    let (round, _) = p.recv_response(&json!(1)).await;
    assert_eq!(
        round["result"]["resultType"], "input_required",
        "the host does its own rounds: {round}"
    );
    p.send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"regional","arguments":{"region":"eu"},"_meta": meta}}),
    )
    .await;
    let (seen, _) = p.recv_response(&json!(2)).await;
    assert_eq!(
        text(&seen),
        "mcp-param-region=eu",
        "no list yet: the HeaderMismatch makes the proxy list the tools, then call again"
    );
    p.close().await;
    let bodies: Vec<Value> = tb.requests().iter().filter_map(|r| r.json()).collect();
    assert_eq!(
        bodies[0]["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"], "modern-host",
        "bytes as the host wrote them"
    );
    let statuses: Vec<Option<u16>> = tb.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Some(200), Some(200), Some(400), Some(200), Some(200)],
        "discover, confirm, regional (mismatch), tools/list, regional"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_legacy_never_probes_and_protocol_modern_refuses_an_older_server() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let mut p = Proxy::spawn(&[&tb.url(), "--protocol", "legacy"]);
    p.initialize("2025-11-25").await;
    p.close().await;
    let methods: Vec<String> = tb
        .requests()
        .iter()
        .filter_map(|r| r.rpc_method())
        .collect();
    assert_eq!(
        methods.first().map(String::as_str),
        Some("initialize"),
        "{methods:?}"
    );
    assert!(!methods.iter().any(|m| m == "server/discover"));

    let mut p = Proxy::spawn(&[&tb.url(), "--protocol", "modern"]);
    p.send(
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}),
    )
    .await;
    let (refused, _) = p.recv_response(&json!(0)).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("does not speak MCP 2026-07-28") && message.contains("--protocol"),
        "{refused}"
    );
    p.close().await;

    let p = Proxy::spawn(&[&tb.url(), "--protocol", "sometimes"]);
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(2), "a wrong value is a usage error");
    assert!(stderr.contains("auto") && stderr.contains("legacy") && stderr.contains("modern"));
}
