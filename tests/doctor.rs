//! `mcp-remote-client --doctor` against the loopback testbed in each failure mode
//! it can stage: the failing step is named with its fix, and a healthy server (open
//! or behind sign-in) passes every step.

mod common;

use common::oauth::{browser, protected};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use testbed::{AuthConfig, AuthorizeBehaviour, Config, Testbed, ThrowawayCa};

/// Runs the doctor with `--json` in a fresh config folder; returns the exit code
/// and the steps by name.
async fn doctor(name: &str, args: Vec<String>) -> (Option<i32>, Vec<Value>) {
    doctor_in(&fresh_dir(name), args).await
}

/// An empty config folder for one test.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-remote-doctor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `mcp-remote-client` with `args` in config folder `dir`; stdout as JSON.
async fn client(dir: &Path, args: Vec<String>) -> (Option<i32>, Value) {
    let dir = dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
            .args(&args)
            .env("MCP_REMOTE_CONFIG_DIR", &dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON document ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

/// Runs the doctor with `--json` in config folder `dir`.
async fn doctor_in(dir: &Path, args: Vec<String>) -> (Option<i32>, Vec<Value>) {
    let dir = dir.to_path_buf();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_endpoint_names_its_successor() {
    let tb = Testbed::start(Config {
        gone: Some("https://new.example.com/mcp".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let (code, steps) = doctor("gone", vec![tb.url()]).await;
    assert_eq!(code, Some(1));
    let (name, detail, fix) = failed(&steps);
    assert_eq!(name, "transport", "{detail}");
    assert!(detail.contains("410 Gone"), "{detail}");
    assert!(fix.contains("https://new.example.com/mcp"), "{fix}");
    for later in ["initialize", "tools/list"] {
        assert!(
            steps
                .iter()
                .all(|s| s["step"] != later || s["outcome"] == "skipped"),
            "{later} is not attempted after the transport failed: {steps:#?}"
        );
    }

    let tb = Testbed::start(Config {
        gone: Some(String::new()),
        ..Config::default()
    })
    .await
    .unwrap();
    // A retired legacy HTTP+SSE URL, without a successor named.
    let legacy_url = format!("{}/sse", tb.origin());
    let (code, steps) = doctor("gone-no-link", vec![legacy_url]).await;
    assert_eq!(code, Some(1));
    let (name, _, fix) = failed(&steps);
    assert_eq!(name, "transport");
    assert!(fix.contains("operator"), "{fix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_metadata_is_a_warning_until_its_guessed_endpoints_fail() {
    let no_metadata = || AuthConfig {
        prm_urls: Vec::new(),
        challenge_resource_metadata: false,
        as_metadata_urls: Vec::new(),
        ..AuthConfig::default()
    };
    // The 2025-03-26 default endpoints at the origin work: a warning, exit 0.
    let tb = protected(no_metadata()).await;
    let (code, steps) = doctor("fallback", vec![tb.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    let discovery = step(&steps, "discovery");
    assert_eq!(discovery["outcome"], "warning");
    assert!(discovery["detail"]
        .as_str()
        .unwrap()
        .contains("default endpoints"));
    assert_eq!(step(&steps, "sign-in")["outcome"], "passed");

    // The authorization server lives under a path, so the guesses miss: discovery
    // is the failure named first, with its fix.
    let tb = protected(AuthConfig {
        issuer_path: Some("/tenant".into()),
        ..no_metadata()
    })
    .await;
    let (code, steps) = doctor("no-discovery", vec![tb.url()]).await;
    assert_eq!(code, Some(1), "{steps:#?}");
    let failing: Vec<&str> = steps
        .iter()
        .filter(|s| s["outcome"] == "failed")
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(failing[0], "discovery", "{steps:#?}");
    assert!(
        step(&steps, "discovery")["fix"]
            .as_str()
            .unwrap()
            .contains("metadata"),
        "{steps:#?}"
    );
}

/// The life of stored credentials as the doctor and the listing see it: signed in,
/// expired and refreshed, refresh refused and signed in again, listed, forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_credentials_refreshed_refused_listed_and_forgotten() {
    let tb = protected(AuthConfig::default()).await;
    let dir = fresh_dir("lifecycle");
    let tokens_file = || {
        let store = dir.join("mcp-remote-v1");
        std::fs::read_dir(&store)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("_tokens.json"))
    };
    // Make the stored access token look expired (as after a night asleep).
    let expire_stored = || {
        let path = tokens_file().expect("a tokens file");
        let mut tokens: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        tokens["expires_at"] = 1_000.into();
        std::fs::write(&path, tokens.to_string()).unwrap();
    };

    let (code, steps) = doctor_in(&dir, vec![tb.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    assert!(step(&steps, "sign-in")["detail"]
        .as_str()
        .unwrap()
        .contains("browser"));

    tb.expire_access_tokens();
    expire_stored();
    let (code, steps) = doctor_in(&dir, vec![tb.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    let credentials = step(&steps, "credentials")["detail"].as_str().unwrap();
    assert!(
        credentials.contains("expired") && credentials.contains("refresh token"),
        "{credentials}"
    );
    assert_eq!(step(&steps, "refresh")["outcome"], "passed", "{steps:#?}");
    assert!(
        steps.iter().all(|s| s["step"] != "sign-in"),
        "a refresh is no browser sign-in: {steps:#?}"
    );

    tb.revoke_all_tokens();
    expire_stored();
    let (code, steps) = doctor_in(&dir, vec![tb.url()]).await;
    assert_eq!(
        code,
        Some(0),
        "a refused refresh followed by a sign-in passes: {steps:#?}"
    );
    let refresh = step(&steps, "refresh");
    assert_eq!(refresh["outcome"], "warning", "{steps:#?}");
    assert!(refresh["detail"].as_str().unwrap().contains("refused"));
    assert_eq!(step(&steps, "sign-in")["outcome"], "passed");

    let (code, listed) = client(&dir, vec!["--list-servers".into(), "--json".into()]).await;
    assert_eq!(code, Some(0));
    let servers = listed["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{listed}");
    let server = &servers[0];
    assert_eq!(server["url"], tb.url().as_str());
    assert_eq!(server["transport"], "streamable-http");
    assert_eq!(server["tokens"]["refreshable"], true);
    assert_eq!(server["tokens"]["expired"], false);
    assert!(server["tokens"]["issuer"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1"));
    assert!(server["client"]["issuer"].is_string());
    let text = listed.to_string();
    let stored = std::fs::read_to_string(tokens_file().unwrap()).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    for secret in ["access_token", "refresh_token"] {
        let value = stored[secret].as_str().unwrap();
        assert!(!text.contains(value), "the listing shows no {secret}");
    }

    let (code, cleaned) = client(&dir, vec![tb.url(), "--clean".into(), "--json".into()]).await;
    assert_eq!(code, Some(0), "{cleaned}");
    let removed: Vec<&str> = cleaned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for suffix in ["_tokens.json", "_client_info.json", "_transport.json"] {
        assert!(removed.iter().any(|p| p.ends_with(suffix)), "{cleaned}");
    }
    assert!(tokens_file().is_none());
    let (_, listed) = client(&dir, vec!["--list-servers".into(), "--json".into()]).await;
    assert_eq!(listed["servers"], serde_json::json!([]), "{listed}");

    let (code, steps) = doctor_in(&dir, vec![tb.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    assert_eq!(step(&steps, "credentials")["detail"], "none stored");
    assert_eq!(step(&steps, "registration")["outcome"], "passed");
    assert_eq!(step(&steps, "sign-in")["outcome"], "passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_shows_who_the_certificate_is_for_and_names_an_expired_or_misnamed_one() {
    let ca = ThrowawayCa::new("Doctor Inspecting CA").unwrap();
    let ca_file =
        std::env::temp_dir().join(format!("mcp-remote-doctor-ca-{}.pem", std::process::id()));
    ca.write_ca_pem(&ca_file).unwrap();
    let trusting = |url: String| vec![url, format!("--extra-ca-certs={}", ca_file.display())];

    let good = Testbed::start_tls(
        Config::default(),
        &ca.issue(&["127.0.0.1", "localhost"]).unwrap(),
    )
    .await
    .unwrap();
    let (code, steps) = doctor("tls-good", trusting(good.url())).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    let tls = step(&steps, "tls");
    assert_eq!(tls["outcome"], "passed");
    let detail = tls["detail"].as_str().unwrap();
    for part in [
        "127.0.0.1",
        "localhost",
        "issued by Doctor Inspecting CA",
        "valid until",
        "days",
    ] {
        assert!(detail.contains(part), "{part} in {detail}");
    }

    let expired = Testbed::start_tls(
        Config::default(),
        &ca.issue_expired(&["127.0.0.1"]).unwrap(),
    )
    .await
    .unwrap();
    let (code, steps) = doctor("tls-expired", trusting(expired.url())).await;
    assert_eq!(code, Some(1));
    let (name, detail, fix) = failed(&steps);
    assert_eq!(name, "tls", "{detail}");
    assert!(fix.contains("expired"), "{detail} / {fix}");

    let misnamed = Testbed::start_tls(Config::default(), &ca.issue(&["mcp.example.com"]).unwrap())
        .await
        .unwrap();
    let (code, steps) = doctor("tls-name", trusting(misnamed.url())).await;
    assert_eq!(code, Some(1));
    let (name, detail, fix) = failed(&steps);
    assert_eq!(name, "tls", "{detail}");
    assert!(fix.contains("another name"), "{detail} / {fix}");
    let _ = std::fs::remove_file(&ca_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_server_passes_every_step_and_is_named_as_such() {
    let tb = Testbed::start(Config {
        modern: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let (code, steps) = doctor("modern", vec![tb.url()]).await;
    assert_eq!(code, Some(0), "{steps:#?}");
    assert!(step(&steps, "transport")["detail"]
        .as_str()
        .unwrap()
        .contains("MCP 2026-07-28"));
    assert!(step(&steps, "initialize")["detail"]
        .as_str()
        .unwrap()
        .contains("mcp-testbed-modern"));
    let tools = step(&steps, "tools/list")["detail"].as_str().unwrap();
    assert!(tools.contains("echo"), "{tools}");
}
