//! `--trace`: the timeline of a whole session (sign-in, calls, a refresh, a 404
//! re-initialization, a broken response stream resumed) in order, line by line
//! JSON, with no secret at any verbosity or with `--trace-bodies`; a trace file
//! that cannot be written never stops the relay; the file's cap and rotation; the
//! default file and `MCP_REMOTE_TRACE`.

mod common;

use common::oauth::{initialize, protected, Env};
use common::{call, text, Proxy};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use testbed::{AuthConfig, Config, Testbed};

/// The trace file's records, each line parsed (a line that is not one JSON object fails).
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the trace file");
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", n + 1));
            assert!(v.is_object() && v["t"].is_u64(), "line {}: {line}", n + 1);
            v
        })
        .collect()
}

/// The index of the first record at or after `from` that satisfies `want`.
fn find(records: &[Value], from: usize, what: &str, want: impl Fn(&Value) -> bool) -> usize {
    records[from..]
        .iter()
        .position(want)
        .map(|i| i + from)
        .unwrap_or_else(|| {
            let kinds: Vec<String> = records[from..]
                .iter()
                .map(|r| format!("{} {} {}", r["kind"], r["machine"], r["event"]))
                .collect();
            panic!("no {what} after record {from}: {kinds:#?}")
        })
}

fn is_step(r: &Value, machine: &str, event: &str) -> bool {
    r["kind"] == "step" && r["machine"] == machine && r["event"] == event
}

/// One whole session through the proxy with `flags`; returns the trace's records, the
/// trace's text, stderr and every secret that went through.
async fn whole_session(
    name: &'static str,
    flags: Vec<&'static str>,
) -> (Vec<Value>, String, String, Vec<String>) {
    let tb = protected(AuthConfig {
        access_ttl_secs: 4,
        token_endpoint_auth_methods: vec!["client_secret_basic".to_owned()],
        ..AuthConfig::default()
    })
    .await;
    tb.set_config(|c| c.sse_retry_ms = Some(200));
    let env = Env::new(name);
    let file = env.dir.join("trace.jsonl");
    let trace_arg = format!("--trace={}", file.display());
    let mut args = vec![tb.url(), trace_arg];
    args.extend(flags.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = env.spawn(&args, &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("result").is_some(), "{r}");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    let secret_argument = format!("sk-argument-{name}");
    p.send(call(
        1,
        "echo",
        json!({"text": "one", "api_key": secret_argument}),
    ))
    .await;
    assert_eq!(text(&p.recv_response(&json!(1)).await.0), "one");
    let refreshed = |_: &[testbed::Recorded]| {
        tb.token_requests()
            .iter()
            .any(|t| t.grant_type.as_deref() == Some("refresh_token"))
    };
    assert!(tb.wait_for(refreshed, Duration::from_secs(10)).await);
    p.send(call(2, "echo", json!({"text": "two"}))).await;
    assert_eq!(text(&p.recv_response(&json!(2)).await.0), "two");
    let mut session_ids = tb.session_ids();
    assert!(!session_ids.is_empty());
    tb.expire_sessions();
    p.send(call(3, "echo", json!({"text": "three"}))).await;
    assert_eq!(text(&p.recv_response(&json!(3)).await.0), "three");
    p.send(call(4, "drop_then_resume", json!({}))).await;
    let (r, _) = p.recv_response(&json!(4)).await;
    assert!(r.get("result").is_some(), "{r}");
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0));

    let mut secrets = vec![secret_argument];
    for t in tb.issued_access_tokens() {
        secrets.push(t.access_token);
        secrets.extend(t.refresh_token);
    }
    for t in tb.token_requests() {
        for key in ["code", "code_verifier", "refresh_token"] {
            secrets.extend(t.param(key).map(str::to_owned));
        }
    }
    let client = env.stored("_client_info.json").unwrap();
    secrets.push(client["client_secret"].as_str().unwrap().to_owned());
    session_ids.extend(tb.session_ids());
    secrets.extend(session_ids);
    let text = std::fs::read_to_string(&file).unwrap();
    (records(&file), text, stderr, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_session_is_traced_in_order_and_without_a_secret_at_every_verbosity() {
    let runs: [(&'static str, Vec<&'static str>); 4] = [
        ("trace-plain", vec![]),
        ("trace-v", vec!["-v"]),
        ("trace-vv", vec!["-vv", "--debug"]),
        ("trace-bodies", vec!["--trace-bodies", "-vv"]),
    ];
    let sessions = futures_join(
        runs.iter()
            .map(|(name, flags)| whole_session(name, flags.clone()))
            .collect(),
    )
    .await;
    for ((name, flags), (records, text, stderr, secrets)) in runs.iter().zip(sessions) {
        // The first line names the schema and the run; the last one ends it.
        let first = &records[0];
        assert_eq!(first["kind"], "start", "{name}");
        assert_eq!(first["schema"], "mcp-remote-trace/1");
        assert!(first["start"].as_str().unwrap().ends_with('Z'));
        assert_eq!(records.last().unwrap()["kind"], "end", "{name}");
        let times: Vec<u64> = records.iter().map(|r| r["t"].as_u64().unwrap()).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{name}: times in order"
        );
        // The story, in order.
        let at = find(&records, 0, "the sign-in asked for", |r| {
            is_step(r, "grant", "Needed") && r["to"] == "signing_in"
        });
        let at = find(
            &records,
            at,
            "the browser sent to the authorization URL",
            |r| {
                r["kind"] == "effect"
                    && r["effect"] == "AwaitCallback"
                    && r["detail"].as_str().unwrap().contains("/authorize?")
            },
        );
        let at = find(&records, at, "the code exchanged", |r| {
            r["kind"] == "http" && r["purpose"] == "token" && r["status"] == 200
        });
        let at = find(&records, at, "signed in", |r| {
            is_step(r, "grant", "SignedIn") && r["to"] == "authorized"
        });
        let at = find(&records, at, "the answer to call 1", |r| {
            r["kind"] == "message"
                && r["from"] == "server"
                && r["id"] == "1"
                && r["answer_us"].is_u64()
        });
        let at = find(&records, at, "a refresh", |r| {
            r["kind"] == "effect"
                && r["effect"] == "RequestToken"
                && r["detail"].as_str().unwrap().starts_with("refresh_token")
        });
        let at = find(&records, at, "refreshed", |r| {
            is_step(r, "grant", "Refreshed")
        });
        let at = find(&records, at, "the 404 for the forgotten session", |r| {
            r["kind"] == "http" && r["status"] == 404 && r["purpose"] == "host_message"
        });
        let at = find(&records, at, "the link re-initializing", |r| {
            is_step(r, "link", "SessionExpired")
                && r["effects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e == "PostReinitialize")
        });
        let at = find(&records, at, "the replayed initialize answered", |r| {
            is_step(r, "link", "ReinitAnswered")
        });
        let at = find(&records, at, "the answer to call 3", |r| {
            r["kind"] == "message" && r["from"] == "server" && r["id"] == "3"
        });
        let at = find(&records, at, "the broken stream noticed", |r| {
            r["kind"] == "log" && r["event"] == "Resuming"
        });
        let at = find(&records, at, "the resuming GET", |r| {
            r["kind"] == "http" && r["purpose"] == "resume" && r["status"] == 200
        });
        find(&records, at, "the answer to call 4", |r| {
            r["kind"] == "message" && r["from"] == "server" && r["id"] == "4"
        });
        // An HTTP exchange says what it was, without values.
        let post = records
            .iter()
            .find(|r| r["kind"] == "http" && r["purpose"] == "host_message" && r["status"] == 200)
            .unwrap();
        for field in ["head_us", "end_us", "sent", "received", "exchange"] {
            assert!(post[field].is_u64(), "{name}: {field} in {post}");
        }
        assert!(post["request_headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "authorization"));
        assert!(["new", "reused"].contains(&post["connection"].as_str().unwrap()));
        assert!(
            records.iter().any(|r| r["connection"] == "reused"),
            "{name}: connections are reused"
        );
        // Bodies only when asked for, and then redacted.
        let bodies = flags.contains(&"--trace-bodies");
        let call_1 = records
            .iter()
            .find(|r| r["kind"] == "message" && r["from"] == "host" && r["id"] == "1")
            .unwrap();
        assert_eq!(call_1.get("body").is_some(), bodies, "{name}: {call_1}");
        if bodies {
            assert_eq!(call_1["body"]["params"]["arguments"]["text"], "one");
            assert_eq!(
                call_1["body"]["params"]["arguments"]["api_key"],
                "[redacted]"
            );
        }
        // -v renders steps for humans on stderr; without it, none.
        let human = stderr.contains("grant: unauthorized --Needed--> signing_in");
        assert_eq!(human, !flags.is_empty(), "{name}");
        let timers = stderr.contains("timer: ");
        assert_eq!(timers, flags.contains(&"-vv"), "{name}");
        // No secret anywhere.
        assert!(secrets.len() >= 8, "{name}: {}", secrets.len());
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name}: a secret in the trace");
            assert!(!stderr.contains(s.as_str()), "{name}: a secret on stderr");
        }
    }
}

/// Runs the futures concurrently (the sessions wait on timers, not on the CPU).
async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut handles = Vec::new();
    for f in futures {
        handles.push(tokio::spawn(f));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a session"));
    }
    out
}

async fn plain_testbed() -> Testbed {
    Testbed::start(Config::default()).await.expect("testbed")
}

/// `count` echo calls, each answered.
async fn relay(p: &mut Proxy, count: u64) {
    p.initialize("2025-11-25").await;
    for id in 1..=count {
        p.send(call(id, "echo", json!({"text": format!("m{id}")})))
            .await;
        let (r, _) = p.recv_response(&json!(id)).await;
        assert_eq!(text(&r), format!("m{id}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_or_an_unwritable_trace_never_stops_the_relay() {
    let tb = plain_testbed().await;
    // /dev/full: every write fails with ENOSPC.
    let mut p = Proxy::spawn(&[&tb.url(), "--trace=/dev/full", "-v"]);
    relay(&mut p, 200).await;
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("cannot be written"),
        "the user is told once: {stderr}"
    );
    assert_eq!(stderr.matches("cannot be written").count(), 1);
    // A folder that does not exist: the trace cannot be opened at all.
    let mut p = Proxy::spawn(&[&tb.url(), "--trace=/nonexistent-folder/trace.jsonl"]);
    relay(&mut p, 20).await;
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0));
    assert!(stderr.contains("cannot write the trace"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_file_is_capped_and_rotates() {
    let tb = plain_testbed().await;
    let dir = std::env::temp_dir().join(format!("mcp-remote-trace-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.jsonl");
    let arg = format!("--trace={}", file.display());
    let cap = 8192u64;
    let mut p = Proxy::spawn_with_env(
        &[&tb.url(), &arg],
        &[("MCP_REMOTE_TRACE_MAX_BYTES", &cap.to_string())],
    );
    relay(&mut p, 150).await;
    p.close().await;
    let older = dir.join("t.jsonl.1");
    assert!(older.exists(), "the full file moved to .1");
    for path in [&file, &older] {
        let size = std::fs::metadata(path).unwrap().len();
        // At most one line past the cap (a line is a few hundred bytes here).
        assert!(size < cap + 2048, "{} is {size} bytes", path.display());
    }
    let current = records(&file);
    assert_eq!(current[0]["kind"], "start");
    assert_eq!(current[0]["rotated"], true);
    assert!(!dir.join("t.jsonl.2").exists(), "two files at most");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_trace_flag_and_the_environment_variable_name_the_file() {
    let tb = plain_testbed().await;
    // Bare --trace: <config dir>/<key>_trace.jsonl.
    let env = Env::new("trace-default");
    let mut p = env.spawn(&[&tb.url(), "--trace"], &[]);
    relay(&mut p, 2).await;
    p.close().await;
    let path = env
        .stored_path("_trace.jsonl")
        .expect("the trace in the config folder");
    let first = &records(&path)[0];
    assert_eq!(first["program"], "mcp-remote");
    assert_eq!(first["flags"], json!(["--trace"]));
    // MCP_REMOTE_TRACE=FILE.
    let file = env.dir.join("from-env.jsonl");
    let mut p = env.spawn(
        &[&tb.url()],
        &[("MCP_REMOTE_TRACE", file.to_str().unwrap())],
    );
    relay(&mut p, 2).await;
    p.close().await;
    let records = records(&file);
    assert!(records
        .iter()
        .any(|r| r["kind"] == "message" && r["method"] == "tools/call"));
}
