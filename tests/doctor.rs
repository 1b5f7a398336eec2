//! `mcp-remote-client --doctor` against the loopback testbed in each failure mode
//! it can stage: the failing step is named with its fix, and a healthy server (open
//! or behind sign-in) passes every step.

mod common;

use common::oauth::{browser, protected};
use serde_json::Value;
use std::process::Command;
use testbed::{AuthConfig, AuthorizeBehaviour, Config, Testbed, ThrowawayCa};

/// Runs the doctor with `--json` in a fresh config folder; returns the exit code
/// and the steps by name.
async fn doctor(name: &str, args: Vec<String>) -> (Option<i32>, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!("mcp-remote-doctor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
            .args(&args)
            .args(["--doctor", "--json", "--auth-timeout", "10"])
            .env("MCP_REMOTE_CONFIG_DIR", &dir)
            .env("BROWSER", browser())
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON document ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let steps = doc["steps"].as_array().unwrap().clone();
    assert_eq!(
        doc["passed"],
        out.status.code() == Some(0),
        "passed matches the exit code"
    );
    (out.status.code(), steps)
}

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {steps:#?}"))
}

/// The one failed step, its detail and its fix.
fn failed(steps: &[Value]) -> (&str, &str, &str) {
    let failed: Vec<&Value> = steps.iter().filter(|s| s["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1, "one failed step: {steps:#?}");
    let s = failed[0];
    (
        s["step"].as_str().unwrap(),
        s["detail"].as_str().unwrap(),
        s["fix"].as_str().expect("a failed step says what to do"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_server_passes_every_step_open_or_behind_sign_in() {
    let open = Testbed::start(Config::default()).await.unwrap();
    let (code, steps) = doctor("healthy", vec![open.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    for name in [
        "url",
        "dns",
        "tcp",
        "proxy",
        "transport",
        "credentials",
        "initialize",
        "tools/list",
    ] {
        let s = step(&steps, name);
        assert!(
            ["passed", "skipped"].contains(&s["outcome"].as_str().unwrap()),
            "{s}"
        );
    }
    assert!(step(&steps, "transport")["detail"]
        .as_str()
        .unwrap()
        .contains("Streamable HTTP"));
    assert!(step(&steps, "initialize")["detail"]
        .as_str()
        .unwrap()
        .contains("mcp-testbed"));
    assert!(step(&steps, "tools/list")["detail"]
        .as_str()
        .unwrap()
        .contains("echo"));

    let signed = protected(AuthConfig::default()).await;
    let (code, steps) = doctor("healthy-auth", vec![signed.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    for name in [
        "discovery",
        "registration",
        "sign-in",
        "initialize",
        "tools/list",
    ] {
        assert_eq!(step(&steps, name)["outcome"], "passed", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_a_wrong_path_and_an_unknown_ca_are_named_with_their_fix() {
    let (code, steps) = doctor("refused", vec!["http://127.0.0.1:9/mcp".into()]).await;
    assert_eq!(code, Some(1));
    let (name, _, fix) = failed(&steps);
    assert_eq!(name, "tcp");
    assert!(fix.contains("nothing accepts connections"), "{fix}");

    let tb = Testbed::start(Config::default()).await.unwrap();
    let wrong = format!("{}/nowhere", tb.origin());
    let (code, steps) = doctor("path", vec![wrong]).await;
    assert_eq!(code, Some(1));
    let (name, detail, fix) = failed(&steps);
    assert_eq!(name, "transport");
    assert!(detail.contains("404"), "{detail}");
    assert!(fix.contains("path"), "{fix}");

    let ca = ThrowawayCa::new("doctor test CA").unwrap();
    let identity = ca.issue(&["127.0.0.1"]).unwrap();
    let tls = Testbed::start_tls(Config::default(), &identity)
        .await
        .unwrap();
    let (code, steps) = doctor("tls", vec![tls.url()]).await;
    assert_eq!(code, Some(1));
    let (name, _, fix) = failed(&steps);
    assert_eq!(name, "tls");
    assert!(fix.contains("NODE_EXTRA_CA_CERTS"), "{fix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_and_a_refused_sign_in_are_named() {
    let tb = protected(AuthConfig {
        dcr: false,
        ..AuthConfig::default()
    })
    .await;
    let (code, steps) = doctor("no-dcr", vec![tb.url()]).await;
    assert_eq!(code, Some(1));
    let (name, detail, fix) = failed(&steps);
    assert_eq!(name, "registration", "{detail}");
    assert!(fix.contains("--static-oauth-client-info"), "{fix}");

    let tb = protected(AuthConfig {
        authorize_behaviour: AuthorizeBehaviour::Deny,
        ..AuthConfig::default()
    })
    .await;
    let (code, steps) = doctor("denied", vec![tb.url()]).await;
    assert_eq!(code, Some(1));
    let failing: Vec<&str> = steps
        .iter()
        .filter(|s| s["outcome"] == "failed")
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(failing[0], "sign-in", "{steps:#?}");
    assert!(step(&steps, "sign-in")["detail"]
        .as_str()
        .unwrap()
        .contains("access_denied"));
}
