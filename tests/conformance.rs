//! The `@modelcontextprotocol/conformance` client scenarios `initialize`,
//! `tools_call` and `sse-retry`, with this binary as the proxy under test (a
//! Node SDK client drives it over stdio). The suite and Node 22 are installed by
//! `tests/interop/setup.sh`, which the script runs itself.

use std::process::Command;

#[test]
fn conformance_client_scenarios_pass_without_warnings() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tests/interop/conformance.sh"))
        .args(["initialize", "tools_call", "sse-retry"])
        .env("MCP_REMOTE_BIN", env!("CARGO_BIN_EXE_mcp-remote"))
        .current_dir(root)
        .output()
        .expect("run tests/interop/conformance.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "conformance failed:\n{stdout}\n{stderr}"
    );
    for scenario in ["initialize", "tools_call", "sse-retry"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("PASS") && l.contains(scenario)),
            "{scenario} did not pass:\n{stdout}"
        );
    }
}
