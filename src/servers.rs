//! What the config folder holds per server, for `mcp-remote-client --list-servers`
//! and `--clean`: the files of the `mcp-remote-v1` layout grouped by their key,
//! read without changing anything and shown without a secret (no token, no
//! client secret, no client id; URLs as a trace shows them).

use actors::token_store::{now_ms, StoredClient, StoredTokens, TokenStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// The files `--clean` removes: credentials, a half-done sign-in, the remembered
/// transport and `initialize` answer. The lock and the trace stay.
const FORGOTTEN: [&str; 7] = [
    "tokens.json",
    "client_info.json",
    "code_verifier.txt",
    "authorize_url.txt",
    "callback_url.txt",
    "transport.json",
    "initialize.json",
];

/// One line on stdout; a reader that went away is not an error.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// One server's files.
#[derive(Debug, Default)]
pub struct StoredServer {
    /// mcp-remote's per-server key (md5 of the URL and the flags that matter).
    pub key: String,
    /// The server's URL, redacted, where this proxy remembered it (servers signed
    /// in only by the Node mcp-remote have none).
    pub url: Option<String>,
    /// The tokens file, read.
    pub tokens: Option<Result<StoredTokens, String>>,
    /// The registered client, read.
    pub client: Option<Result<StoredClient, String>>,
    /// The remembered transport.
    pub transport: Option<String>,
    /// Every file name of this key, sorted.
    pub files: Vec<String>,
}

/// A key is mcp-remote's md5: 32 lowercase hex digits.
fn split_key(name: &str) -> Option<(&str, &str)> {
    let (key, rest) = name.split_at_checked(32)?;
    let rest = rest.strip_prefix('_')?;
    key.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some((key, rest))
}

/// Why a file does not parse, without quoting it (a serde message can quote a value).
fn unreadable(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => "its fields are not the expected ones".to_owned(),
        _ => format!("not valid JSON (line {}, column {})", e.line(), e.column()),
    }
}

/// Read a tokens file.
fn read_tokens(path: &Path) -> Result<StoredTokens, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))
}

/// Read a client file.
fn read_client(path: &Path) -> Result<StoredClient, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))
}

/// Every server in `dir` with stored credentials or a remembered transport,
/// sorted by URL (unknown last), then key. A missing folder is an empty list.
pub fn list(dir: &Path) -> std::io::Result<Vec<StoredServer>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut by_key: BTreeMap<String, StoredServer> = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((key, rest)) = split_key(name) else {
            continue;
        };
        let server = by_key
            .entry(key.to_owned())
            .or_insert_with(|| StoredServer {
                key: key.to_owned(),
                ..StoredServer::default()
            });
        server.files.push(name.to_owned());
        let path = entry.path();
        match rest {
            "tokens.json" => server.tokens = Some(read_tokens(&path)),
            "client_info.json" => server.client = Some(read_client(&path)),
            "transport.json" => {
                server.transport = actors::store::read_transport(Some(&path)).map(|t| {
                    match t {
                        machines::link::Transport::Streamable => "streamable-http",
                        machines::link::Transport::Legacy => "sse",
                    }
                    .to_owned()
                });
                server.url = actors::store::read_server_url(&path);
            }
            _ => {}
        }
    }
    let mut servers: Vec<StoredServer> = by_key
        .into_values()
        .filter(|s| s.tokens.is_some() || s.client.is_some() || s.transport.is_some())
        .map(|mut s| {
            s.files.sort();
            s
        })
        .collect();
    servers
        .sort_by(|a, b| (a.url.is_none(), &a.url, &a.key).cmp(&(b.url.is_none(), &b.url, &b.key)));
    Ok(servers)
}

/// "in 52 min" / "3 h ago", for a time `ms` since the epoch.
fn relative(ms: u64, now: u64) -> String {
    let (delta, future) = if ms >= now {
        (ms - now, true)
    } else {
        (now - ms, false)
    };
    let secs = delta / 1000;
    let amount = match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn utc(ms: u64) -> String {
    actors::trace::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

impl StoredServer {
    /// How the client was registered, judged from its id: a URL is a client ID
    /// metadata document, anything else a registration (dynamic or by hand).
    fn client_kind(client: &StoredClient) -> &'static str {
        if client.client_id.starts_with("https://") {
            "client ID metadata document"
        } else {
            "registered client"
        }
    }

    /// The text block of `--list-servers`.
    pub fn render(&self, now: u64) -> String {
        let mut out = match &self.url {
            Some(url) => format!("{url}\n"),
            None => "(URL not recorded: signed in by the Node mcp-remote, or before this proxy remembered URLs)\n".to_owned(),
        };
        out.push_str(&format!("  key        {}\n", self.key));
        let tokens = match &self.tokens {
            None => "none".to_owned(),
            Some(Err(e)) => format!("unreadable: {e}"),
            Some(Ok(t)) => {
                let expiry = match t.expires_at {
                    Some(at) if at > now => {
                        format!("valid until {} ({})", utc(at), relative(at, now))
                    }
                    Some(at) => format!("expired {} ({})", relative(at, now), utc(at)),
                    None => "no expiry given".to_owned(),
                };
                let refresh = if t.refresh_token.is_some() {
                    "refreshable"
                } else {
                    "no refresh token"
                };
                let issuer = t
                    .issuer
                    .as_deref()
                    .map(|i| format!(", issuer {i}"))
                    .unwrap_or_default();
                format!("{expiry}, {refresh}{issuer}")
            }
        };
        out.push_str(&format!("  tokens     {tokens}\n"));
        let client = match &self.client {
            None => "none".to_owned(),
            Some(Err(e)) => format!("unreadable: {e}"),
            Some(Ok(c)) => format!(
                "{}{}",
                Self::client_kind(c),
                c.issuer
                    .as_deref()
                    .map(|i| format!(" at {i}"))
                    .unwrap_or_default()
            ),
        };
        out.push_str(&format!("  client     {client}\n"));
        out.push_str(&format!(
            "  transport  {}\n",
            self.transport.as_deref().unwrap_or("not remembered")
        ));
        out
    }

    /// The JSON object of `--list-servers --json`.
    pub fn to_json(&self, now: u64) -> Value {
        let tokens = match &self.tokens {
            None => Value::Null,
            Some(Err(e)) => json!({"error": e}),
            Some(Ok(t)) => json!({
                "expires_at": t.expires_at.map(utc),
                "expired": t.expires_at.map(|at| at <= now),
                "refreshable": t.refresh_token.is_some(),
                "issuer": t.issuer,
                "scope": t.scope,
            }),
        };
        let client = match &self.client {
            None => Value::Null,
            Some(Err(e)) => json!({"error": e}),
            Some(Ok(c)) => json!({"kind": Self::client_kind(c), "issuer": c.issuer}),
        };
        json!({
            "url": self.url,
            "key": self.key,
            "tokens": tokens,
            "client": client,
            "transport": self.transport,
            "files": self.files,
        })
    }
}

/// `--list-servers`: print every server in `dir`; the exit code.
pub fn print_list(dir: &Path, json_output: bool) -> i32 {
    let now = now_ms();
    let servers = match list(dir) {
        Ok(servers) => servers,
        Err(e) => {
            eprintln!("mcp-remote-client: cannot read {}: {e}", dir.display());
            return 1;
        }
    };
    if json_output {
        let doc = json!({
            "config_dir": dir.display().to_string(),
            "servers": servers.iter().map(|s| s.to_json(now)).collect::<Vec<_>>(),
        });
        say(&doc.to_string());
        return 0;
    }
    match servers.len() {
        0 => say(&format!("No stored servers in {}.", dir.display())),
        1 => say(&format!("1 server in {}:", dir.display())),
        n => say(&format!("{n} servers in {}:", dir.display())),
    }
    for server in &servers {
        say(&format!("\n{}", server.render(now).trim_end()));
    }
    if !servers.is_empty() {
        say("\nForget one with: mcp-remote-client --clean <URL> (with the same --header flags it was used with)");
    }
    0
}

/// What `--clean` removed, and what it could not.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// The files removed.
    pub removed: Vec<PathBuf>,
    /// Files that stayed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Keys whose lock another process held (nothing of theirs was removed).
    pub busy: Vec<String>,
}

/// Forget the servers of `keys` and of every key whose remembered URL is
/// `shown_url`: remove their credential files (under each key's lock, waited
/// for up to `wait`).
pub fn clean(dir: &Path, keys: &[String], shown_url: &str, wait: Duration) -> Cleaned {
    let mut all: Vec<String> = keys.to_vec();
    if let Ok(servers) = list(dir) {
        for server in servers {
            if server.url.as_deref() == Some(shown_url) && !all.contains(&server.key) {
                all.push(server.key);
            }
        }
    }
    let mut cleaned = Cleaned::default();
    for key in all {
        let store = TokenStore::new(dir.to_path_buf(), key.clone());
        let exists = FORGOTTEN
            .iter()
            .any(|name| dir.join(format!("{key}_{name}")).exists());
        if !exists {
            continue;
        }
        let lock = match store.lock(wait) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                cleaned.busy.push(key);
                continue;
            }
            Err(e) => {
                cleaned.failed.push((dir.join(&key), e.to_string()));
                continue;
            }
        };
        for name in FORGOTTEN {
            let path = dir.join(format!("{key}_{name}"));
            match std::fs::remove_file(&path) {
                Ok(()) => cleaned.removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => cleaned.failed.push((path, e.to_string())),
            }
        }
        drop(lock);
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_md5_hex_and_relative_times_read_well() {
        assert_eq!(
            split_key("0123456789abcdef0123456789abcdef_tokens.json"),
            Some(("0123456789abcdef0123456789abcdef", "tokens.json"))
        );
        assert_eq!(
            split_key("0123456789ABCDEF0123456789abcdef_tokens.json"),
            None
        );
        assert_eq!(split_key("short_tokens.json"), None);
        assert_eq!(split_key("0123456789abcdef0123456789abcdefxtokens"), None);
        assert_eq!(relative(10_000 + 3_000_000, 10_000), "in 50 min");
        assert_eq!(relative(0, 3 * 3600 * 1000), "3 h ago");
        assert_eq!(relative(5_000, 0), "in 5 s");
    }
}
