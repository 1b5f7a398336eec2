//! The PyPI wheel, built by maturin from `pyproject.toml` (its `bin` bindings: the
//! programs, no Python), then used the two ways users use it:
//!
//! - installed with pip in a fresh venv, `mcp-remote-rs <url>` run as a host runs it:
//!   initialize, a tool call, stdin closed, exit 0, the answer's bytes the same as the
//!   binary's when run directly;
//! - `uvx --from <wheel> mcp-remote-rs <url>`, offline (nothing comes from an index).
//!
//! A test binary of its own: maturin's `cargo build` puts its programs in
//! `target/debug`, and no other test may be starting them while it does.
//! maturin and uv come from `tests/interop/setup.sh` (run when missing); logs and the
//! wheel in `target/tmp/install-wheel`.

// Linux: it reads /proc and uses Unix signals and modes.
#![cfg(target_os = "linux")]

mod common;
mod interop_common;

use common::{echo_line, run_bounded, Proxy};
use interop_common::{ensure_installed, interop_prefix, log_dir, repo_root};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testbed::{Config, Testbed};

/// What every exchange says: quotes, escapes, a line separator and non-ASCII.
const SAY: &str = "héllo \"uvx\" \\ \u{2028} ✓ 𝄞";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wheel_installs_in_a_fresh_venv_and_runs_through_uvx() {
    let dir = log_dir("install-wheel");
    let _ = std::fs::remove_dir_all(dir.join("wheels"));
    let _ = std::fs::remove_dir_all(dir.join("venv"));
    let venv_bin = interop_prefix().join("venv/bin");
    let (maturin, uvx) = (venv_bin.join("maturin"), venv_bin.join("uvx"));
    let installed = || maturin.is_file() && uvx.is_file();
    ensure_installed(&installed, &dir).expect("tooling");

    // The test build's profile (its dependencies are built already); stripped, as a
    // release wheel's programs are.
    run_bounded(
        Command::new(&maturin)
            .args(["build", "--profile", "dev", "--strip", "--out"])
            .arg(dir.join("wheels"))
            .current_dir(repo_root()),
        "maturin build",
        Duration::from_secs(900),
    );
    let wheel: PathBuf = std::fs::read_dir(dir.join("wheels"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("mcp_remote_rs-"), "{name}");
    assert!(
        name.ends_with("_x86_64.whl") && name.contains("-py3-none-"),
        "{name}"
    );

    // pip, into a fresh venv, from the file alone.
    let venv = dir.join("venv");
    run_bounded(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "venv",
        Duration::from_secs(120),
    );
    run_bounded(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--no-index",
                "--disable-pip-version-check",
                "-q",
            ])
            .arg(&wheel),
        "pip install",
        Duration::from_secs(120),
    );
    for program in ["mcp-remote-rs", "mcp-remote", "mcp-remote-client"] {
        let version = run_bounded(
            Command::new(venv.join("bin").join(program)).arg("--version"),
            program,
            Duration::from_secs(30),
        );
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{program}: {version}"
        );
    }

    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let url = tb.url();
    let installed = venv.join("bin/mcp-remote-rs");
    let pip = Proxy::spawn_program(installed.to_str().unwrap(), &[&url], &[]);
    let pip_line = echo_line(pip, SAY).await;
    let direct_line = echo_line(Proxy::spawn(&[&url]), SAY).await;
    assert_eq!(
        pip_line, direct_line,
        "the installed program answers byte for byte"
    );

    // uvx, as a host's config runs it, offline: everything from the wheel.
    let uv_cache = dir.join("uv-cache");
    let wheel_arg = wheel.to_str().unwrap();
    let through_uvx = Proxy::spawn_program(
        uvx.to_str().unwrap(),
        &["--offline", "--from", wheel_arg, "mcp-remote-rs", &url],
        &[
            ("UV_CACHE_DIR", uv_cache.to_str().unwrap()),
            ("UV_NO_CONFIG", "1"),
            ("UV_PYTHON_DOWNLOADS", "never"),
        ],
    );
    let uvx_line = echo_line(through_uvx, SAY).await;
    assert_eq!(uvx_line, direct_line, "uvx runs the same program");
}
