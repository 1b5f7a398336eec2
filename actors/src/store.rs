//! Small files in mcp-remote's config folder. For now: which transport a server
//! turned out to speak (`<key>_transport.json`), so the next start goes straight
//! to it. Writes are atomic (temporary file, then rename), the folder is 0700 and
//! the file 0600; a file that cannot be read or parsed is reported and ignored.

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

/// Remember `transport` for this server.
pub fn write_transport(path: &Path, transport: Transport) {
    let name = match transport {
        Transport::Streamable => "streamable-http",
        Transport::Legacy => "sse",
    };
    let body = serde_json::json!({ "transport": name }).to_string();
    if let Err(e) = write_private(path, body.as_bytes()) {
        tracing::warn!("cannot remember the transport in {}: {e}", path.display());
    } else {
        tracing::info!("remembered that this server speaks {name}");
    }
}

/// Forget what was remembered.
pub fn forget_transport(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("forgot the remembered transport (it no longer worked)"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Write a file readable by its owner only, atomically, creating the folder 0700.
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
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("mcp-remote-store-{}", std::process::id()));
        let path = dir.join("k_transport.json");
        assert_eq!(read_transport(Some(&path)), None);
        write_transport(&path, Transport::Legacy);
        assert_eq!(read_transport(Some(&path)), Some(Transport::Legacy));
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
