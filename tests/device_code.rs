//! The device authorization grant (RFC 8628) against the loopback testbed's
//! authorization server: `--device-code` on a desktop (the code-filled URL opened in
//! the browser), the automatic choice on a machine without a display (the user enters
//! the code on another device), `slow_down`, and every error that ends the sign-in.

mod common;

use common::oauth::{initialize, protected, Env};
use common::{call, text};
use serde_json::json;
use std::time::Duration;
use testbed::AuthConfig;

fn device_server(script: &[&str]) -> AuthConfig {
    AuthConfig {
        device_grant: true,
        device_poll_script: script.iter().map(|s| s.to_string()).collect(),
        ..AuthConfig::default()
    }
}

/// A machine without a display or a browser, in an SSH session.
const HEADLESS: [(&str, &str); 5] = [
    ("BROWSER", ""),
    ("DISPLAY", ""),
    ("WAYLAND_DISPLAY", ""),
    ("SSH_CONNECTION", "192.0.2.1 50000 192.0.2.2 22"),
    ("SSH_TTY", "/dev/pts/9"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_opens_the_code_filled_url_and_signs_in_without_a_callback() {
    let tb = protected(device_server(&[])).await;
    let env = Env::new("device-flag");
    let mut p = env.spawn(&[&tb.url(), "--device-code"], &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("result").is_some(), "{r}");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "via device"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "via device");
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0));

    assert!(tb.authorize_count() == 0, "no browser redirect flow at all");
    let opened = std::fs::read_to_string(&env.log).unwrap();
    assert!(
        opened.contains("/device?user_code="),
        "the browser got verification_uri_complete: {opened}"
    );
    let polls = tb.device_polls();
    assert_eq!(polls.last().map(|p| p.outcome.as_str()), Some("tokens"));
    assert!(
        stderr.contains("enter the code"),
        "the code is shown: {stderr}"
    );
    let client = env.stored("_client_info.json").expect("client stored");
    assert_eq!(
        client["grant_types"][0], "urn:ietf:params:oauth:grant-type:device_code",
        "registered for the device grant"
    );
    assert!(env.stored("_tokens.json").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_display_the_code_is_entered_elsewhere_and_slow_down_is_honoured() {
    let tb = protected(device_server(&["slow_down"])).await;
    let env = Env::new("device-headless");
    let mut p = env.spawn(&[&tb.url()], &HEADLESS);
    p.send(common::oauth::initialize_request()).await;
    // The user reads the code where the proxy said it is (stderr, or the file it names)
    // and enters it on their phone.
    let mut shown = None;
    for _ in 0..200 {
        if let Some(path) = env.stored_path("_authorize_url.txt") {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(rest) = text.split("enter the code ").nth(1) {
                shown = Some((
                    text.clone(),
                    rest.split_whitespace().next().unwrap().to_owned(),
                ));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (instructions, user_code) = shown.expect("the code is shown in the file");
    assert!(instructions.contains(&format!("{}/device", tb.origin())));
    let approve = format!("{}/device?user_code={user_code}", tb.origin());
    // The user's own browser, on another device (it logs nothing to this scenario).
    let status = std::process::Command::new(common::oauth::browser())
        .arg(&approve)
        .env_remove("MCP_BROWSER_LOG")
        .status()
        .unwrap();
    assert!(status.success(), "the user approved");
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(r.get("result").is_some(), "{r}");
    let (_, stderr) = p.close().await;
    assert!(stderr.contains(&user_code), "{stderr}");
    assert!(env.launches() == 0, "no browser was started");
    assert!(tb.authorize_count() == 0);

    let polls = tb.device_polls();
    assert_eq!(polls[0].outcome, "slow_down");
    assert_eq!(polls.last().unwrap().outcome, "tokens");
    // RFC 8628 §3.5: the interval (1 s) grows by 5 s after slow_down, for every later poll.
    for pair in polls.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(5_900),
            "polls {gap:?} apart after a slow_down"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_errors_reach_the_host_with_what_to_do() {
    for (script, expected) in [
        (vec!["access_denied"], "declined"),
        (vec!["authorization_pending", "expired_token"], "expired"),
    ] {
        let tb = protected(device_server(&script)).await;
        let env = Env::new("device-errors");
        let mut p = env.spawn(
            &[&tb.url(), "--device-code"],
            &[("MCP_BROWSER_NO_FOLLOW", "1")],
        );
        let r = initialize(&mut p).await;
        let message = r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(expected), "{script:?}: {r}");
        let (_, stderr) = p.close().await;
        assert!(stderr.contains(expected), "{stderr}");
        assert!(env.stored("_tokens.json").is_none());
        assert_eq!(
            tb.device_polls().len(),
            script.len(),
            "no poll after the end"
        );
    }

    // --device-code and a server without the grant: said plainly, no browser flow.
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("device-missing");
    let mut p = env.spawn(&[&tb.url(), "--device-code"], &[]);
    let r = initialize(&mut p).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("does not offer the device authorization grant")
            && message.contains("without --device-code"),
        "{r}"
    );
    p.close().await;
    assert_eq!(env.launches(), 0);
}
