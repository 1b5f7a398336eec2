//! The server-everything session suite, shared by `interop_everything.rs`
//! (Streamable HTTP) and `interop_sse.rs` (legacy HTTP+SSE, with and without
//! transport fallback). Each function is one test body; the caller says how
//! the proxy reaches the server ([`Target`]).
//!
//! Server facts the tests rely on (server-everything 2026.8.31):
//! * `trigger-sampling-request`, `trigger-elicitation-request` and
//!   `get-roots-list` exist only if `initialize` declared `sampling`,
//!   `elicitation`, `roots`; they are registered when the server handles
//!   `notifications/initialized` (each registration also sends
//!   `notifications/tools/list_changed`).
//! * ~350 ms after `notifications/initialized` the server sends `roots/list`.
//!   Over Streamable HTTP it travels on the standalone GET SSE stream (as do
//!   logging messages and the `roots/list` inside `get-roots-list`), so those
//!   need the proxy's GET stream; sampling/elicitation requests travel on the
//!   tools/call POST stream. Over legacy SSE every server message travels on
//!   the one `GET /sse` stream and every POST answers 202.

use super::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

pub const CONDITIONAL_TOOLS: [&str; 3] = [
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "get-roots-list",
];
pub const BASE_TOOLS: [&str; 12] = [
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

/// initialize, tools/list, ping, logging/setLevel, and a server notification
/// on the standalone GET stream (simulated logging).
pub async fn lifecycle_tools_list_ping_logging(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("lifecycle", t).await;
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
pub async fn echo_special_characters_exact(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("echo", t).await;
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
pub async fn resources_prompts_completion(t: &Target) {
    with_budget(async {
    let mut h = Host::spawn("resources", t).await;
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
pub async fn sampling_and_elicitation_round_trips(t: &Target) {
    with_budget(async {
    let mut h = Host::spawn("sampling-elicitation", t).await;
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
pub async fn roots_round_trips(t: &Target) {
    with_budget(async {
    let mut h = Host::spawn("roots", t).await;
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
pub async fn progress_before_result(t: &Target) {
    with_budget(async {
    let mut h = Host::spawn("progress", t).await;
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
pub async fn pipelined_200_calls(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("pipelined", t).await;
        h.initialize().await;
        let took = h
            .pipelined(200, Duration::from_secs(40), |i| {
                if i % 10 == 9 {
                    let want = format!("The sum of {i} and 1 is {}.", i + 1);
                    ("get-sum", json!({"a": i, "b": 1}), want)
                } else {
                    let message = format!("pipelined #{i} ✓");
                    (
                        "echo",
                        json!({"message": message}),
                        format!("Echo: {message}"),
                    )
                }
            })
            .await;
        eprintln!("[pipelined] 200 calls answered in {took:?}");
        h.finish().await; // also fails on any duplicate arriving late
    })
    .await;
}

/// 1 MiB each way: echo of a >1 MiB string (mixed multi-byte text with
/// U+2028 and newlines), and gzip-file-as-resource of 768 KiB random bytes
/// sent as a ~1 MiB data: URI, returning a ~1 MiB base64 blob whose gzip
/// trailer (CRC-32, size) must match what was sent.
pub async fn one_mebibyte_each_way(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("large", t).await;
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
