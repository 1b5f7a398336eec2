//! TokenStore: the files of mcp-remote's config folder that hold credentials,
//! in mcp-remote 0.15's `mcp-remote-v1` layout so sign-ins survive a switch
//! between the Node package and this one:
//!
//! - `<key>_tokens.json`: the token response plus `expires_at` (ms since the
//!   epoch), `requested_scope` and `issuer`;
//! - `<key>_client_info.json`: the registered client (RFC 7591 response) plus `issuer`;
//! - `<key>_lock`: an OS file lock (std `File::lock`) that makes one process at a
//!   time sign in or refresh; it is released when the process dies.
//!
//! The folder is 0700, files 0600, writes atomic. A file that does not parse is
//! reported and moved aside (`…corrupt-<ms>`), never silently trusted or lost.

use crate::store::write_private;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use machines::auth::token::StoredTokens;

/// A registered client (mcp-remote 0.15 `client_info.json`): the RFC 7591
/// response as [`machines::auth::registration`] reads it, plus `issuer`.
pub use machines::auth::registration::ClientInfo as StoredClient;

/// Why the store could not do its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The local file system refused.
    #[error("cannot use the config folder {path}: {reason}")]
    Io {
        /// Which file or folder.
        path: String,
        /// What the system said.
        reason: String,
    },
}

/// The credential files of one server.
#[derive(Debug, Clone)]
pub struct TokenStore {
    /// `<base>/mcp-remote-v1`.
    dir: PathBuf,
    /// The per-server key (mcp-remote's md5).
    key: String,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl TokenStore {
    /// The store of `key` in `dir`.
    pub fn new(dir: PathBuf, key: String) -> Self {
        Self { dir, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}_{name}", self.key))
    }

    /// The stored tokens, if any (a corrupt file is moved aside).
    pub fn load_tokens(&self) -> Option<StoredTokens> {
        self.load("tokens.json")
    }

    /// Save tokens.
    pub fn save_tokens(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        self.save("tokens.json", tokens)
    }

    /// The registered client, if any.
    pub fn load_client(&self) -> Option<StoredClient> {
        self.load("client_info.json")
    }

    /// Save the registered client.
    pub fn save_client(&self, client: &StoredClient) -> Result<(), StoreError> {
        self.save("client_info.json", client)
    }

    /// Where a waiting sign-in leaves its authorization URL (for hosts that hide stderr).
    pub fn authorize_url_path(&self) -> PathBuf {
        self.path("authorize_url.txt")
    }

    /// Where a user whose browser runs on another machine pastes the address the
    /// browser ended on (the callback it could not reach); read and removed at once.
    pub fn pasted_callback_path(&self) -> PathBuf {
        self.path("callback_url.txt")
    }

    /// Forget the tokens and the registration (`--clean`), and the server's
    /// remembered `initialize` answer: a clean start answers nothing from memory.
    pub fn forget(&self) {
        self.forget_files(true, true);
        let _ = std::fs::remove_file(self.path("initialize.json"));
    }

    /// Remove the tokens file and/or the client file. A flow calls this only under
    /// the lock, for files it read there and the authorization server declared dead.
    pub fn forget_files(&self, tokens: bool, client: bool) {
        let names = [("tokens.json", tokens), ("client_info.json", client)];
        for (name, _) in names.iter().filter(|(_, wanted)| *wanted) {
            match std::fs::remove_file(self.path(name)) {
                Ok(()) => tracing::info!(
                    "forgot {}",
                    name.trim_end_matches(".json").replace('_', " ")
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {}: {e}", self.path(name).display()),
            }
        }
    }

    /// Take the cross-process lock, waiting at most `wait`. `None` when another
    /// process still holds it after that.
    pub fn lock(&self, wait: Duration) -> Result<Option<File>, StoreError> {
        let path = self.path("lock");
        let io = |e: std::io::Error| StoreError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        ensure_dir(&self.dir).map_err(io)?;
        let file = open_private(&path).map_err(io)?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn load<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Option<T> {
        let path = self.path(name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice(&text) {
            Ok(v) => {
                tighten_mode(&path);
                Some(v)
            }
            Err(_) => {
                let aside =
                    path.with_file_name(format!("{}_{name}.corrupt-{}", self.key, now_ms()));
                match std::fs::rename(&path, &aside) {
                    Ok(()) => tracing::warn!(
                        "{} is not valid; moved it aside to {}",
                        path.display(),
                        aside.display()
                    ),
                    Err(e) => tracing::warn!(
                        "{} is not valid and could not be moved aside: {e}",
                        path.display()
                    ),
                }
                None
            }
        }
    }

    fn save<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.path(name);
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        write_private(&path, &bytes).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

fn open_private(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    crate::store::private_no_follow(&mut o);
    o.open(path)
}

/// Credentials readable by others (a file copied by hand, a umask of 022) are made
/// private again, with a warning naming the file and the mode it had.
fn tighten_mode(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                "{} was readable by other users (mode {mode:o}); made it private (600)",
                path.display()
            ),
            Err(e) => tracing::warn!(
                "{} is readable by other users (mode {mode:o}) and could not be made private: {e}",
                path.display()
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> TokenStore {
        let dir = std::env::temp_dir().join(format!("mcp-remote-ts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TokenStore::new(dir, "k".into())
    }

    #[test]
    fn reads_what_mcp_remote_writes_and_keeps_secrets_out_of_debug() {
        let s = store("compat");
        std::fs::create_dir_all(&s.dir).unwrap();
        std::fs::write(
            s.path("tokens.json"),
            r#"{"access_token":"at-1","token_type":"bearer","expires_in":3600,"refresh_token":"rt-1","expires_at":1900000000000,"requested_scope":"a b","issuer":"https://as"}"#,
        )
        .unwrap();
        let t = s.load_tokens().unwrap();
        assert_eq!(t.access_token, "at-1");
        assert_eq!(t.refresh_token.as_deref(), Some("rt-1"));
        assert!(t.fresh(1_800_000_000_000, Duration::from_secs(60)));
        assert!(!t.fresh(1_900_000_000_000, Duration::from_secs(60)));
        let shown = format!("{t:?}");
        assert!(!shown.contains("at-1") && !shown.contains("rt-1"));
        std::fs::write(s.path("client_info.json"), r#"{"client_id":"c","client_secret":"s3cr3t-value","redirect_uris":["http://localhost:3334/oauth/callback"],"client_name":"MCP CLI Proxy"}"#).unwrap();
        let c = s.load_client().unwrap();
        assert_eq!(c.extra["client_name"], "MCP CLI Proxy");
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        s.save_client(&c).unwrap();
        let again: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path("client_info.json")).unwrap()).unwrap();
        assert_eq!(
            again["client_name"], "MCP CLI Proxy",
            "unknown fields survive a rewrite"
        );
        let _ = std::fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn corrupt_files_are_moved_aside_and_modes_are_private() {
        let s = store("corrupt");
        s.save_tokens(&StoredTokens {
            access_token: "x".into(),
            ..Default::default()
        })
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&s.dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
            assert_eq!(
                std::fs::metadata(s.path("tokens.json"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
        std::fs::write(s.path("tokens.json"), "{broken").unwrap();
        assert!(s.load_tokens().is_none());
        let names: Vec<String> = std::fs::read_dir(&s.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("k_tokens.json.corrupt-")),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n == "k_tokens.json"));
        let _ = std::fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn the_lock_is_exclusive() {
        let s = store("lock");
        let held = s.lock(Duration::from_millis(10)).unwrap().expect("free");
        // A second handle in the same process contends like another process would.
        let other = TokenStore::new(s.dir.clone(), "k".into());
        assert!(other.lock(Duration::from_millis(200)).unwrap().is_none());
        drop(held);
        assert!(other.lock(Duration::from_millis(200)).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}
