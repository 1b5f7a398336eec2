//! Sign-in scenarios: the headless `mcp-browser` as `$BROWSER`, a private config
//! folder per scenario, and the loopback testbed as a protected MCP server.

use super::Proxy;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testbed::{AuthConfig, Config, Testbed};

/// The headless browser (a testbed binary), built on demand.
pub fn browser() -> PathBuf {
    let path = Path::new(super::binary())
        .with_file_name(format!("mcp-browser{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "testbed", "--bin", "mcp-browser"])
            .status()
            .expect("cargo build mcp-browser");
        assert!(status.success());
    }
    path
}

/// A private config folder and browser launch log for one sign-in scenario.
pub struct Env {
    /// Holds `config/` (the `MCP_REMOTE_CONFIG_DIR`) and `browser.log`.
    pub dir: PathBuf,
    /// One line per browser launch: the authorization URL it was given.
    pub log: PathBuf,
}

impl Env {
    /// A fresh, empty scenario folder named after `name` (and this test process).
    pub fn new(name: &str) -> Env {
        let dir =
            std::env::temp_dir().join(format!("mcp-remote-oauth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("browser.log");
        Env { dir, log }
    }

    /// The `MCP_REMOTE_CONFIG_DIR` of this scenario.
    pub fn config(&self) -> String {
        self.dir.join("config").to_string_lossy().into_owned()
    }

    /// Starts `mcp-remote <args…>` on this folder with the headless browser, plus `extra`
    /// environment variables.
    pub fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> Proxy {
        let browser = browser();
        let config = self.config();
        let log = self.log.to_string_lossy().into_owned();
        let mut env = vec![
            ("MCP_REMOTE_CONFIG_DIR", config.as_str()),
            ("BROWSER", browser.to_str().unwrap()),
            ("MCP_BROWSER_LOG", log.as_str()),
        ];
        env.extend_from_slice(extra);
        Proxy::spawn_with_env(args, &env)
    }

    /// Like [`Env::spawn`] with the browser recording the URL only, in a process
    /// allowed `limit` open file descriptors (`ulimit -n`).
    pub fn spawn_with_fd_limit(&self, limit: u32, args: &[&str]) -> Proxy {
        let browser = browser();
        let config = self.config();
        let log = self.log.to_string_lossy().into_owned();
        let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
        let mut wrapped = vec!["-c", script.as_str(), super::binary()];
        wrapped.extend_from_slice(args);
        Proxy::spawn_program(
            "bash",
            &wrapped,
            &[
                ("MCP_REMOTE_CONFIG_DIR", config.as_str()),
                ("BROWSER", browser.to_str().unwrap()),
                ("MCP_BROWSER_LOG", log.as_str()),
                ("MCP_BROWSER_NO_FOLLOW", "1"),
            ],
        )
    }

    /// Starts a proxy whose user never finishes signing in (the browser only records the
    /// URL), sends `initialize` (id 0) and waits until the browser was opened: the proxy and
    /// the authorization URL it opened.
    pub async fn spawn_awaiting_sign_in(&self, args: &[&str]) -> (Proxy, String) {
        let mut p = self.spawn(args, &[("MCP_BROWSER_NO_FOLLOW", "1")]);
        let launched = self.launches() + 1;
        p.send(initialize_request()).await;
        for _ in 0..200 {
            if self.launches() == launched {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.launches(), launched, "the browser was opened");
        let log = std::fs::read_to_string(&self.log).unwrap();
        (p, log.lines().last().unwrap().to_owned())
    }

    /// How many times a proxy opened the browser.
    pub fn launches(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// The token folder (`<config>/mcp-remote-v1`).
    pub fn store(&self) -> PathBuf {
        self.dir.join("config").join("mcp-remote-v1")
    }

    /// The stored file whose name ends with `suffix` (such as `_tokens.json`), parsed.
    pub fn stored(&self, suffix: &str) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.stored_path(suffix)?).ok()?).ok()
    }

    /// The path of the stored file whose name ends with `suffix`, if there is one.
    pub fn stored_path(&self, suffix: &str) -> Option<PathBuf> {
        std::fs::read_dir(self.store())
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
    }
}

/// A testbed whose MCP endpoint wants a token, with this authorization server set-up.
pub async fn protected(auth: AuthConfig) -> Testbed {
    Testbed::start(Config {
        auth: Some(auth),
        ..Config::default()
    })
    .await
    .expect("testbed")
}

/// An `initialize` request with id 0.
pub fn initialize_request() -> serde_json::Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
}

/// Sends `initialize` (id 0) and returns its answer, whatever it is.
pub async fn initialize(p: &mut Proxy) -> serde_json::Value {
    p.send(initialize_request()).await;
    let (r, _) = p.recv_response(&json!(0)).await;
    r
}
