//! The proxy installed the ways its users install things, then run as a host runs it:
//!
//! - **npm**: the launcher package and the linux-x64 package (`packaging/npm/stage.mjs`)
//!   published to a local registry (verdaccio on loopback, no uplink: nothing can come
//!   from anywhere else), then `npx -y --registry <local> mcp-remote-rs <url>`:
//!   initialize, a tool call, stdin closed, exit 0; the answer's bytes are the ones the
//!   binary writes when run directly; SIGTERM to the launcher ends the binary; the
//!   binary's exit code comes back through the launcher.
//! - **PyPI**: in `install_wheel.rs` (its build must not run beside tests that start
//!   this build's binaries).
//! - **Claude Desktop bundle**: `mcpb validate` and `mcpb pack` accept
//!   `packaging/mcpb/manifest.json` with the binary beside it.
//!
//! Tools come from `tests/interop/setup.sh` (run when missing); logs in
//! `target/tmp/install-*`.

// Linux: it reads /proc and uses Unix signals and modes.
#![cfg(target_os = "linux")]

mod common;
mod interop_common;

use common::{echo_line, run_bounded, Proxy};
use interop_common::{ensure_installed, free_port, interop_prefix, log_dir, node_bin, repo_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testbed::{Config, Testbed};

const PROXY: &str = env!("CARGO_BIN_EXE_mcp-remote");

fn verdaccio_js() -> PathBuf {
    interop_prefix().join("node_modules/verdaccio/bin/verdaccio")
}

fn mcpb_js() -> PathBuf {
    interop_prefix().join("node_modules/@anthropic-ai/mcpb/dist/cli/cli.js")
}

/// A fresh folder under `target/tmp/<name>`.
fn work_dir(name: &str) -> PathBuf {
    let dir = log_dir(name);
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
    dir
}

/// What every exchange says: quotes, escapes, a line separator and non-ASCII, so a
/// launcher that re-encoded anything would show.
const SAY: &str = "héllo \"npx\" \\ \u{2028} ✓ 𝄞";

/// A local npm registry: verdaccio on loopback, no uplink, anyone may publish.
struct Registry {
    url: String,
    child: std::process::Child,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = free_port();
        let config = dir.join("verdaccio.yaml");
        std::fs::write(
            &config,
            format!(
                "storage: {}\nauth:\n  htpasswd:\n    file: {}\nuplinks: {{}}\npackages:\n  '**':\n    access: $all\n    publish: $all\n    unpublish: $all\nmax_body_size: 500mb\nlog: {{ type: stdout, format: pretty, level: warn }}\n",
                dir.join("storage").display(),
                dir.join("htpasswd").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("verdaccio.log")).unwrap();
        let child = Command::new(node_bin())
            .arg(verdaccio_js())
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start verdaccio");
        let registry = Registry {
            url: format!("http://127.0.0.1:{port}/"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while interop_common::http_raw(
            port,
            &format!("GET /-/ping HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
        )
        .is_none_or(|r| !r.starts_with("HTTP/1.1 200"))
        {
            assert!(
                Instant::now() < deadline,
                "verdaccio did not start: {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// npm's settings for this test alone: its own cache and user config (the
/// registry's token), no update check.
fn npm_env(dir: &Path, registry: &str) -> Vec<(String, String)> {
    let npmrc = dir.join("npmrc");
    let host = registry.trim_start_matches("http:");
    std::fs::write(&npmrc, format!("{host}:_authToken=install-test\n")).unwrap();
    vec![
        ("npm_config_userconfig".into(), npmrc.display().to_string()),
        (
            "npm_config_cache".into(),
            dir.join("npm-cache").display().to_string(),
        ),
        ("npm_config_update_notifier".into(), "false".into()),
        ("npm_config_fund".into(), "false".into()),
        ("npm_config_audit".into(), "false".into()),
    ]
}

/// The binaries as a package carries them: without debug information (what a
/// release build has none of), so the test registry is not sent 250 MB.
fn strip_binaries(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let _ = Command::new("strip").arg(entry.path()).status();
    }
}

/// The process ids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn exe_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npx_runs_the_binary_from_a_registry_as_a_host_would() {
    let dir = work_dir("install-npm");
    let installed = || verdaccio_js().is_file() && node_bin().is_file();
    ensure_installed(&installed, &dir).expect("tooling");

    // The two packages, from this build's binaries.
    let stage = repo_root().join("packaging/npm/stage.mjs");
    let bin_dir = Path::new(PROXY).parent().unwrap();
    let (launcher, platform) = (dir.join("launcher"), dir.join("linux-x64"));
    run_bounded(
        Command::new(node_bin())
            .arg(&stage)
            .arg("launcher")
            .arg(&launcher),
        "stage the launcher",
        Duration::from_secs(30),
    );
    run_bounded(
        Command::new(node_bin())
            .arg(&stage)
            .args(["platform", "linux-x64"])
            .arg(bin_dir)
            .arg(&platform),
        "stage linux-x64",
        Duration::from_secs(60),
    );
    strip_binaries(&platform.join("bin"));

    let registry = Registry::start(&dir);
    let env = npm_env(&dir, &registry.url);
    for package in [&platform, &launcher] {
        run_bounded(
            Command::new("npm")
                .arg("publish")
                .arg(package)
                .args(["--registry", &registry.url])
                .envs(env.iter().map(|(k, v)| (k, v))),
            "npm publish",
            Duration::from_secs(120),
        );
    }

    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let url = tb.url();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // As a host's config says it: npx -y <ours> <url>.
    let through_npx = Proxy::spawn_program(
        "npx",
        &["-y", "--registry", &registry.url, "mcp-remote-rs", &url],
        &env_refs,
    );
    let npx_line = echo_line(through_npx, SAY).await;
    let direct_line = echo_line(Proxy::spawn(&[&url]), SAY).await;
    assert_eq!(
        npx_line, direct_line,
        "the launcher passes the bytes unchanged"
    );

    // The exit code comes back: a usage error is 2.
    let out = Command::new("npx")
        .args([
            "-y",
            "--registry",
            &registry.url,
            "mcp-remote-rs",
            "--no-such-flag",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGTERM to the launcher (installed in a project, run by its bin link) ends the
    // binary it started.
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("package.json"), r#"{"name":"app","private":true}"#).unwrap();
    run_bounded(
        Command::new("npm")
            .args(["install", "--registry", &registry.url, "mcp-remote-rs"])
            .current_dir(&app)
            .envs(env.iter().map(|(k, v)| (k, v))),
        "npm install",
        Duration::from_secs(120),
    );
    let installed_bin = app.join("node_modules/mcp-remote-rs-linux-x64/bin/mcp-remote");
    assert!(
        installed_bin.is_file(),
        "npm installed the linux-x64 package"
    );
    for other in ["darwin-arm64", "win32-x64", "linux-arm64"] {
        let path = app.join(format!("node_modules/mcp-remote-rs-{other}"));
        assert!(!path.exists(), "only this platform's package: {other}");
    }
    let launcher_bin = app.join("node_modules/.bin/mcp-remote-rs");
    let mut p = Proxy::spawn_program(launcher_bin.to_str().unwrap(), &[&url], &env_refs);
    p.initialize("2025-06-18").await;
    let launcher_pid = p.child.id().unwrap();
    let binary_pid = children(launcher_pid)
        .into_iter()
        .find(|&c| exe_of(c).is_some_and(|e| e.ends_with("mcp-remote-rs-linux-x64/bin/mcp-remote")))
        .expect("the launcher's child is the installed binary");
    let status = Command::new("kill")
        .args(["-TERM", &launcher_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(15), p.child.wait())
        .await
        .expect("the launcher ends after SIGTERM")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while running(binary_pid) {
        assert!(
            Instant::now() < deadline,
            "the binary still runs after SIGTERM to the launcher"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The binary ends its session in order on SIGTERM and exits 0; a signal death
    // would be passed on as one.
    assert!(
        exited.success() || std::os::unix::process::ExitStatusExt::signal(&exited) == Some(15),
        "{exited}"
    );
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claude_desktop_bundle_validates_packs_and_runs_as_claude_would() {
    let dir = work_dir("install-mcpb");
    let installed = || mcpb_js().is_file() && node_bin().is_file();
    ensure_installed(&installed, &dir).expect("tooling");
    let mcpb = |args: &[&dyn AsRef<std::ffi::OsStr>], what: &str| {
        let mut cmd = Command::new(node_bin());
        cmd.arg(mcpb_js());
        for a in args {
            cmd.arg(a);
        }
        run_bounded(&mut cmd, what, Duration::from_secs(120))
    };

    let bundle = dir.join("bundle");
    let bin_dir = Path::new(PROXY).parent().unwrap();
    run_bounded(
        Command::new(node_bin())
            .arg(repo_root().join("packaging/mcpb/stage.mjs"))
            .arg("linux")
            .arg(bin_dir)
            .arg(&bundle),
        "stage the bundle",
        Duration::from_secs(60),
    );
    strip_binaries(&bundle.join("server"));
    let said = mcpb(
        &[&"validate", &bundle.join("manifest.json")],
        "mcpb validate",
    );
    assert!(said.contains("validation passes"), "{said}");
    let packed = dir.join("mcp-remote-rs.mcpb");
    mcpb(&[&"pack", &bundle, &packed], "mcpb pack");
    let unpacked = dir.join("unpacked");
    mcpb(&[&"unpack", &packed, &unpacked], "mcpb unpack");

    // What Claude Desktop runs: the manifest's command and arguments, with the
    // bundle's folder and the user's setting put in.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["user_config"]["server_url"]["required"], true);
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let url = tb.url();
    let fill = |s: &str| {
        s.replace("${__dirname}", unpacked.to_str().unwrap())
            .replace("${user_config.server_url}", &url)
    };
    let command = fill(
        manifest["server"]["mcp_config"]["command"]
            .as_str()
            .unwrap(),
    );
    let args: Vec<String> = manifest["server"]["mcp_config"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| fill(a.as_str().unwrap()))
        .collect();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&command)
            .expect("the program is in the bundle")
            .permissions(),
    );
    assert!(mode & 0o100 != 0, "the program stays executable: {mode:o}");
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let bundle_line = echo_line(Proxy::spawn_program(&command, &arg_refs, &[]), SAY).await;
    let direct_line = echo_line(Proxy::spawn(&[&url]), SAY).await;
    assert_eq!(bundle_line, direct_line);
}
