//! Small files in mcp-remote's config folder. For now: which transport a server
//! turned out to speak (`<key>_transport.json`), so the next start goes straight
//! to it. Writes are atomic (temporary file, then rename), the folder is 0700 and
//! the file 0600; a file that cannot be read or parsed is reported and ignored.

use machines::engine::Era;
use machines::link::Transport;
use std::io::Write;
use std::path::Path;

/// What the transport file says, if anything usable.
pub fn read_transport(path: Option<&Path>) -> Option<Transport> {
    let path = path?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read {}: {e}; ignoring it", path.display());
            return None;
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => {
            tracing::warn!("{} is not valid JSON; ignoring it", path.display());
            return None;
        }
    };
    match value.get("transport").and_then(|t| t.as_str()) {
        Some("streamable-http") => Some(Transport::Streamable),
        Some("sse") => Some(Transport::Legacy),
        _ => {
            tracing::warn!("{} names no known transport; ignoring it", path.display());
            None
        }
    }
}

/// The protocol era the transport file remembers (`"era"`: `"legacy"` or
/// `"2026-07-28"`), if any.
pub fn read_era(path: Option<&Path>) -> Option<Era> {
    let text = std::fs::read_to_string(path?).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    match value.get("era")?.as_str()? {
        "legacy" => Some(Era::Legacy),
        machines::modern::MODERN_VERSION => Some(Era::Modern),
        _ => None,
    }
}

/// The server URL the transport file names (written redacted, for
/// `mcp-remote-client --list-servers`), if any.
pub fn read_server_url(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("server_url")?.as_str().map(str::to_owned)
}

/// Remember `transport` for this server, and the server's URL as a trace shows it
/// (no user, password or secret query value), so a listing can name the server.
pub fn write_transport(path: &Path, transport: Transport, server: &url::Url, era: Option<Era>) {
    let name = match transport {
        Transport::Streamable => "streamable-http",
        Transport::Legacy => "sse",
    };
    let mut body = serde_json::json!({
        "transport": name,
        "server_url": machines::trace::redact_url(server),
    });
    if let Some(era) = era {
        body["era"] = match era {
            Era::Legacy => "legacy",
            Era::Modern => machines::modern::MODERN_VERSION,
        }
        .into();
    }
    let body = body.to_string();
    if let Err(e) = write_private(path, body.as_bytes()) {
        tracing::warn!("cannot remember the transport in {}: {e}", path.display());
    } else {
        tracing::info!("remembered that this server speaks {name}");
    }
}

/// Where the server's `initialize` answer is remembered, beside the transport file
/// (`<key>_initialize.json`).
pub fn initialize_path(transport_file: &Path) -> std::path::PathBuf {
    let name = transport_file
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .replace("_transport.json", "_initialize.json")
        })
        .unwrap_or_else(|| "initialize.json".into());
    transport_file.with_file_name(name)
}

/// The server's remembered `initialize` result (JSON object text), if usable.
pub fn read_initialize(transport_file: Option<&Path>) -> Option<String> {
    let path = initialize_path(transport_file?);
    let text = std::fs::read_to_string(&path).ok()?;
    if text.len() > machines::engine::MAX_REMEMBERED_INITIALIZE {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.is_object() && v["protocolVersion"].is_string() => Some(v.to_string()),
        _ => {
            tracing::warn!(
                "{} is not a remembered initialize answer; ignoring it",
                path.display()
            );
            None
        }
    }
}

/// Remember the server's `initialize` result.
pub fn write_initialize(transport_file: &Path, result: &str) {
    let path = initialize_path(transport_file);
    if let Err(e) = write_private(&path, result.as_bytes()) {
        tracing::warn!(
            "cannot remember the initialize answer in {}: {e}",
            path.display()
        );
    }
}

/// Forget what was remembered.
pub fn forget_transport(path: &Path) {
    let _ = std::fs::remove_file(initialize_path(path));
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("forgot the remembered transport (it no longer worked)"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Write a file readable by its owner only, atomically, creating the folder 0700.
/// The temporary file has an unpredictable name and is created exclusively
/// (`O_CREAT|O_EXCL`, which never follows a symlink planted in its place).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent folder"))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        unpredictable()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    private_no_follow(&mut options);
    let mut file = options.open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Mode 0600 and no following of a symlink at the path itself (`O_NOFOLLOW`), for
/// every file the proxy opens in its config folder.
pub fn private_no_follow(options: &mut std::fs::OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// 64 bits nobody can guess: the standard library seeds `RandomState` from the OS.
fn unpredictable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Why the config folder cannot hold credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// Another user owns it: they could read or replace every token.
    #[error("the config folder {path} belongs to another user (uid {owner}); refusing to keep credentials there. Set MCP_REMOTE_CONFIG_DIR to a folder of your own")]
    NotOwned {
        /// The folder.
        path: String,
        /// Its owner.
        owner: u32,
    },
    /// It cannot be created or inspected.
    #[error("cannot use the config folder {path}: {reason}")]
    Io {
        /// The folder.
        path: String,
        /// What the system said.
        reason: String,
    },
}

/// Make sure the config folder is fit for credentials, at start: created 0700 when
/// missing; owned by this user (else refused); readable by nobody else (a wider
/// mode is narrowed to 0700: the mode it had is returned, for a warning once the
/// log is up). On Windows the folder lives in the user profile, whose ACLs already
/// keep other users out.
pub fn secure_folder(dir: &Path) -> Result<Option<u32>, FolderError> {
    let io = |e: std::io::Error| FolderError::Io {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(dir).map_err(io)?;
        let me = current_uid().map_err(io)?;
        if meta.uid() != me {
            return Err(FolderError::NotOwned {
                path: dir.display().to_string(),
                owner: meta.uid(),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
            return Ok(Some(mode));
        }
    }
    Ok(None)
}

/// This process's user id: the owner of what it creates.
#[cfg(unix)]
fn current_uid() -> std::io::Result<u32> {
    // SAFETY: getuid has no preconditions and cannot fail.
    Ok(unsafe { libc::getuid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("mcp-remote-store-{}", std::process::id()));
        let path = dir.join("k_transport.json");
        assert_eq!(read_transport(Some(&path)), None);
        let server = url::Url::parse("https://u:pw@example.com/mcp?api_key=k1&x=1").unwrap();
        write_transport(&path, Transport::Legacy, &server, Some(Era::Modern));
        assert_eq!(read_era(Some(&path)), Some(Era::Modern));
        assert_eq!(read_transport(Some(&path)), Some(Transport::Legacy));
        let shown = read_server_url(&path).unwrap();
        assert!(shown.starts_with("https://example.com/mcp?"), "{shown}");
        assert!(!shown.contains("k1") && !shown.contains("pw"), "{shown}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(read_transport(Some(&path)), None);
        forget_transport(&path);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
