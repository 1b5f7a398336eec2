//! The `@modelcontextprotocol/conformance` client `auth/*` scenarios, one
//! `#[test]` each, with this binary as the proxy under test: the runner's mock
//! MCP server and authorization server, a Node SDK host driving the proxy over
//! stdio (`tests/interop/conformance-driver.mjs`, which maps each scenario to
//! proxy flags), and `tests/interop/browser.sh` as `$BROWSER` (it follows the
//! AS's 302 to the proxy's loopback callback).
//!
//! What every scenario checks and what it expects of the client:
//! `tests/interop/AUTH-SCENARIOS.md`. Pass rule (as `conformance.sh`): the
//! runner exits 0, at least one SUCCESS check, no FAILURE and no WARNING.
//!
//! * Proxy: `$MCP_REMOTE_BIN` when set (e.g. the Node reference
//!   `.interop/node_modules/.bin/mcp-remote`, which fails
//!   `scope_omitted_when_undefined` and `oauth_metadata_backcompat_2025_03_26`),
//!   else this package's `mcp-remote`.
//! * The scenarios run one at a time (a lock): each starts its own mock
//!   servers, a Node runner, a Node driver and the proxy.
//! * Results: `target/tmp/conformance-auth/auth_<scenario>/` (checks.json,
//!   the runner's stdout/stderr with the driver's and proxy's stderr,
//!   browser.log with one line per browser open, browser-trace.log).
//! * Node 22, the suite and the SDK come from `tests/interop/setup.sh`, which
//!   the script runs itself (about 0.5 s when already installed).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Above the script's own bound (runner timeout 30 s + 60 s, plus setup).
const SCENARIO_BUDGET: Duration = Duration::from_secs(180);

fn proxy() -> PathBuf {
    match std::env::var_os("MCP_REMOTE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_mcp-remote")),
    }
}

fn run_scenario(scenario: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = env!("CARGO_MANIFEST_DIR");
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance-auth");
    std::fs::create_dir_all(&out_dir).expect("create results dir");
    let log = out_dir.join(format!("{}.log", scenario.replace('/', "_")));
    let logf = std::fs::File::create(&log).expect("create log");
    let mut child = Command::new("bash")
        .arg(format!("{root}/tests/interop/conformance-auth.sh"))
        .arg(scenario)
        .env("MCP_REMOTE_BIN", proxy())
        .env("CONFORMANCE_OUT", &out_dir)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("run tests/interop/conformance-auth.sh");
    // Read stdout on a thread so that the wait below stays bounded.
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + SCENARIO_BUDGET;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for conformance-auth.sh") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap_or_default();
    println!("{stdout}");
    let status = status.unwrap_or_else(|| {
        panic!(
            "{scenario}: conformance-auth.sh still running after {SCENARIO_BUDGET:?}\n{stdout}\nlog: {}",
            log.display()
        )
    });
    let verdict = stdout.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let v = w.next()?;
        (w.next()? == scenario).then_some(v)
    });
    assert!(
        status.success() && verdict == Some("PASS"),
        "{scenario} did not pass with proxy {} ({status}); the script's output is above\nscript stderr: {}\nresults: {}",
        proxy().display(),
        log.display(),
        out_dir.join(scenario.replace('/', "_")).display()
    );
}

macro_rules! scenarios {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run_scenario($name);
            }
        )*

        /// The list here and `conformance-auth.sh --list` are the same set.
        #[test]
        fn scenario_list_matches_the_script() {
            let root = env!("CARGO_MANIFEST_DIR");
            let out = Command::new("bash")
                .arg(format!("{root}/tests/interop/conformance-auth.sh"))
                .arg("--list")
                .output()
                .expect("conformance-auth.sh --list");
            let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            let mut want: Vec<String> = vec![$($name.to_string()),*];
            let mut got = listed.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want, "conformance-auth.sh --list differs from this file");
        }
    };
}

scenarios! {
    metadata_default => "auth/metadata-default",
    metadata_var1 => "auth/metadata-var1",
    metadata_var2 => "auth/metadata-var2",
    metadata_var3 => "auth/metadata-var3",
    basic_cimd => "auth/basic-cimd",
    scope_from_www_authenticate => "auth/scope-from-www-authenticate",
    scope_from_scopes_supported => "auth/scope-from-scopes-supported",
    scope_omitted_when_undefined => "auth/scope-omitted-when-undefined",
    scope_step_up => "auth/scope-step-up",
    scope_retry_limit => "auth/scope-retry-limit",
    token_endpoint_auth_basic => "auth/token-endpoint-auth-basic",
    token_endpoint_auth_post => "auth/token-endpoint-auth-post",
    token_endpoint_auth_none => "auth/token-endpoint-auth-none",
    pre_registration => "auth/pre-registration",
    oauth_endpoint_fallback_2025_03_26 => "auth/2025-03-26-oauth-endpoint-fallback",
    oauth_metadata_backcompat_2025_03_26 => "auth/2025-03-26-oauth-metadata-backcompat",
    resource_mismatch => "auth/resource-mismatch",
    offline_access_scope => "auth/offline-access-scope",
    offline_access_not_supported => "auth/offline-access-not-supported",
    client_credentials_basic => "auth/client-credentials-basic",
    client_credentials_jwt => "auth/client-credentials-jwt",
    authorization_server_migration => "auth/authorization-server-migration",
    enterprise_managed_authorization => "auth/enterprise-managed-authorization",
}
