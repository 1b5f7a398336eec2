//! `@modelcontextprotocol/conformance` 0.2.0-alpha (the suite's next line) at
//! protocol revision 2026-07-28: every client scenario `--requirements 2026-07-28`
//! scores, plus `auth/client-credentials-basic` and
//! `json-schema-2020-12-preservation` from its unscored list, run one at a time
//! with `--spec-version 2026-07-28` through this binary with default flags (a
//! Node SDK 1.32.2 host, which speaks 2025-11-25, drives it over stdio; see
//! `tests/interop/conformance-driver.mjs` for what the host does per scenario).
//! Pass rule as `conformance.sh`: runner exit 0, at least one SUCCESS check, no
//! FAILURE and no WARNING.

use std::process::{Command, Stdio};

/// The required client set of `requirements/2026-07-28.yaml` (0.2.0-alpha.12),
/// then the two unscored scenarios the issue names.
const SCENARIOS: [&str; 34] = [
    "tools_call",
    "request-metadata",
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/authorization-server-migration",
    "auth/iss-supported",
    "auth/iss-not-advertised",
    "auth/iss-supported-missing",
    "auth/iss-wrong-issuer",
    "auth/iss-unexpected",
    "auth/iss-normalized",
    "auth/metadata-issuer-mismatch",
    "sep-2322-client-request-state",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "json-schema-ref-no-deref",
    // Not scored by the suite; named by the issue.
    "auth/client-credentials-basic",
    "json-schema-2020-12-preservation",
];

#[test]
fn every_2026_07_28_client_scenario_passes_without_warnings() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance-2026");
    let out = Command::new("timeout")
        .args(["900", "bash"])
        .arg(format!("{root}/tests/interop/conformance.sh"))
        .args(SCENARIOS)
        .env("MCP_REMOTE_BIN", env!("CARGO_BIN_EXE_mcp-remote"))
        .env("CONFORMANCE_SPEC", "2026-07-28")
        .env("CONFORMANCE_OUT", &out_dir)
        .env("CONFORMANCE_LABEL", "conformance-2026")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/interop/conformance.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let failed: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| {
            !stdout.lines().any(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some("PASS") && w.next() == Some(*s)
            })
        })
        .collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "did not pass at 2026-07-28: {failed:?}\n{stdout}\n{}\nresults: {}",
        String::from_utf8_lossy(&out.stderr),
        out_dir.display()
    );
}
