//! `mcp-remote-client config add|remove|list`: put this proxy in an MCP client's own
//! config file, the way people get wrong most often by hand — the file's location on
//! each platform, one argument per array element, Windows' `cmd /c npx`, secrets in
//! `env` instead of `args`.
//!
//! The file is edited in place ([`crate::jsonc`]): every byte outside the one entry
//! stays where it was, comments and unknown keys included. A copy is made before the
//! first change; a file that is not JSON is reported with its line and column and left
//! alone; an entry of the same name that says something else is replaced only with
//! `--force`.

use crate::jsonc;
use serde_json::{json, Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// The MCP clients whose config files this knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    ClaudeDesktop,
    Cursor,
    Windsurf,
    ClaudeCode,
    Vscode,
}

impl Client {
    pub const ALL: [Client; 5] = [
        Client::ClaudeDesktop,
        Client::Cursor,
        Client::Windsurf,
        Client::ClaudeCode,
        Client::Vscode,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "Claude Desktop",
            Client::Cursor => "Cursor",
            Client::Windsurf => "Windsurf",
            Client::ClaudeCode => "Claude Code",
            Client::Vscode => "VS Code",
        }
    }

    /// The object the servers live in: VS Code says `servers`, the others `mcpServers`.
    fn servers_key(self) -> &'static str {
        match self {
            Client::Vscode => "servers",
            _ => "mcpServers",
        }
    }

    /// Whether an entry says `"type": "stdio"` (VS Code and Claude Code write it).
    fn typed(self) -> bool {
        matches!(self, Client::Vscode | Client::ClaudeCode)
    }

    /// The user-level config file on this platform: `home` is the user's home folder,
    /// `app_data` the per-user application folder (`%APPDATA%` on Windows,
    /// `~/Library/Application Support` on macOS, `$XDG_CONFIG_HOME` or `~/.config`
    /// elsewhere).
    pub fn config_path(self, home: &Path, app_data: &Path) -> PathBuf {
        match self {
            Client::ClaudeDesktop => app_data.join("Claude").join("claude_desktop_config.json"),
            Client::Cursor => home.join(".cursor").join("mcp.json"),
            Client::Windsurf => home
                .join(".codeium")
                .join("windsurf")
                .join("mcp_config.json"),
            Client::ClaudeCode => home.join(".claude.json"),
            Client::Vscode => app_data.join("Code").join("User").join("mcp.json"),
        }
    }
}

/// The user's home folder and application-data folder, from the environment.
pub fn user_folders() -> Result<(PathBuf, PathBuf), ConfigError> {
    let home = std::env::home_dir()
        .filter(|h| !h.as_os_str().is_empty())
        .ok_or(ConfigError::NoHome)?;
    let app_data = if cfg!(windows) {
        std::env::var_os("APPDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("AppData").join("Roaming"))
    } else if cfg!(target_os = "macos") {
        home.join("Library").join("Application Support")
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"))
    };
    Ok((home, app_data))
}

/// What starts the proxy in the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `npx -y <package>` (`cmd /c npx` on Windows, where clients cannot start `npx.cmd`).
    Npx(String),
    /// `uvx <package>`.
    Uvx(String),
    /// A program by its path.
    Path(String),
}

/// The entry to write: the server's URL and what to pass beside it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub url: String,
    pub launch: Launch,
    /// `--header` values as given (`Name: value`): each value goes to `env`.
    pub headers: Vec<String>,
    /// `--env KEY=VALUE`.
    pub env: Vec<(String, String)>,
    /// More `mcp-remote` arguments, one element each.
    pub extra_args: Vec<String>,
}

impl Entry {
    /// The entry as the client's config holds it.
    pub fn to_json(&self, client: Client, windows: bool) -> Result<Value, ConfigError> {
        let (command, mut args) = match &self.launch {
            Launch::Npx(package) if windows => (
                "cmd".to_owned(),
                vec!["/c".into(), "npx".into(), "-y".into(), package.clone()],
            ),
            Launch::Npx(package) => ("npx".to_owned(), vec!["-y".into(), package.clone()]),
            Launch::Uvx(package) => ("uvx".to_owned(), vec![package.clone()]),
            Launch::Path(path) => (path.clone(), vec![]),
        };
        args.push(self.url.clone());
        let mut env = Map::new();
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .filter(|(n, _)| is_token(n.trim()))
                .ok_or_else(|| ConfigError::BadHeader(redacted_header(header)))?;
            let (name, value) = (name.trim(), value.trim());
            if value.starts_with("${") && value.ends_with('}') && !value.contains(' ') {
                // Already a reference to the client's environment.
                args.extend(["--header".into(), format!("{name}:{value}")]);
                continue;
            }
            // The value goes to `env`: out of the arguments (where it shows in process
            // lists and logs), and no space inside an argument (Cursor and Claude
            // Desktop on Windows split arguments on spaces).
            let var = format!(
                "MCP_HEADER_{}",
                name.to_ascii_uppercase().replace(['-', '.'], "_")
            );
            args.extend(["--header".into(), format!("{name}:${{{var}}}")]);
            env.insert(var, Value::String(value.to_owned()));
        }
        for (key, value) in &self.env {
            env.insert(key.clone(), Value::String(value.clone()));
        }
        args.extend(self.extra_args.iter().cloned());
        if windows && matches!(self.launch, Launch::Npx(_)) {
            // `cmd /c` reads the line again: `&`, `|`, `<`, `>`, `^`, `%` and quotes in
            // an argument (a URL's query, say) would run or redirect something else.
            if let Some(arg) = args
                .iter()
                .find(|a| a.contains(['&', '|', '<', '>', '^', '%', '"']))
            {
                return Err(ConfigError::CmdUnsafe(shown_arg(arg)));
            }
        }
        let mut entry = Map::new();
        if client.typed() {
            entry.insert("type".into(), json!("stdio"));
        }
        entry.insert("command".into(), Value::String(command));
        entry.insert("args".into(), json!(args));
        if !env.is_empty() {
            entry.insert("env".into(), Value::Object(env));
        }
        Ok(Value::Object(entry))
    }
}

/// A header name is an RFC 9110 token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header for an error message: its name only.
fn redacted_header(header: &str) -> String {
    match header.split_once(':') {
        Some((name, _)) => format!("{}:…", name.trim()),
        None => "(no ':' in it)".into(),
    }
}

/// The default entry name: the server's host, and its port when it is not the default.
pub fn default_name(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("mcp").trim_start_matches("www.");
    match url.port() {
        Some(port) => format!("{host}-{port}"),
        None => host.to_owned(),
    }
}

#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// No home folder to find the client's file in.
    NoHome,
    /// The file could not be read or written.
    Io { path: PathBuf, reason: String },
    /// The file is not JSON (with comments): nothing was changed.
    Syntax {
        path: PathBuf,
        error: jsonc::SyntaxError,
    },
    /// The file is JSON but not the shape the client uses.
    Shape { path: PathBuf, what: String },
    /// An entry of that name exists and says something else.
    Exists { name: String, path: PathBuf },
    /// `remove` found nothing by that name or URL.
    NotFound { what: String, path: PathBuf },
    /// A `--header` that is not `Name: value`.
    BadHeader(String),
    /// On Windows, `npx` runs through `cmd /c`, which would misread this argument.
    CmdUnsafe(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoHome => write!(f, "cannot find the home folder: give the file with --config-file"),
            ConfigError::Io { path, reason } => write!(f, "{}: {reason}", path.display()),
            ConfigError::Syntax { path, error } => write!(
                f,
                "{} is not valid JSON ({error}); nothing was changed: fix the file (or move it away) and run this again",
                path.display()
            ),
            ConfigError::Shape { path, what } => write!(f, "{}: {what}; nothing was changed", path.display()),
            ConfigError::Exists { name, path } => write!(
                f,
                "{} already has a server named \"{name}\" that runs something else; nothing was changed: choose another --name, or add --force to replace it",
                path.display()
            ),
            ConfigError::NotFound { what, path } => write!(
                f,
                "{} has no server named or reaching \"{what}\"; `mcp-remote-client config list` shows what it has",
                path.display()
            ),
            ConfigError::BadHeader(h) => write!(f, "--header {h}: expected \"Name: value\""),
            ConfigError::CmdUnsafe(arg) => write!(
                f,
                "on Windows npx is started through `cmd /c`, which would misread {arg} (it holds & | < > ^ % or a quote); nothing was changed: use --via uvx or --via path"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What a change did, for the user.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Replaced,
    /// The same entry was there already: the file was not touched.
    Unchanged,
    Removed,
}

/// The outcome of `add` or `remove`.
#[derive(Debug)]
pub struct Outcome {
    pub change: Change,
    pub name: String,
    /// The copy made before the change, when the file existed.
    pub backup: Option<PathBuf>,
    /// The entry as written (for `add`), or as it was (for `remove`).
    pub entry: Value,
    /// Other entries that reach the same URL (a second copy the user may not want).
    pub same_url: Vec<String>,
}

/// Add (or, with `force`, replace) the entry `name` in the client's file at `path`.
pub fn add(
    path: &Path,
    client: Client,
    name: &str,
    entry: &Value,
    force: bool,
) -> Result<Outcome, ConfigError> {
    let original = read(path)?;
    let text = original.as_deref().unwrap_or("");
    let servers_key = client.servers_key();
    let unit = jsonc::indent_unit(text);
    let rendered = render(entry, &unit);
    let (new_text, change, same_url) = if text.trim().is_empty() {
        let nl = "\n";
        let doc = format!(
            "{{{nl}{unit}{}: {{{nl}{unit}{unit}{}: {}{nl}{unit}}}{nl}}}{nl}",
            json!(servers_key),
            json!(name),
            jsonc::reindent(&rendered, &format!("{unit}{unit}"), "\n")
        );
        (doc, Change::Added, vec![])
    } else {
        let root = parse(path, text)?;
        if !matches!(root.kind, jsonc::Kind::Object(_)) {
            return Err(shape(path, "the file is not a JSON object"));
        }
        match root.member(servers_key) {
            None => {
                let value = format!(
                    "{{\n{unit}{}: {}\n}}",
                    json!(name),
                    jsonc::reindent(&rendered, &unit, "\n")
                );
                let t = jsonc::insert_member(text, &root, servers_key, &value);
                (t, Change::Added, vec![])
            }
            Some(servers) => {
                if !matches!(servers.value.kind, jsonc::Kind::Object(_)) {
                    return Err(shape(path, &format!("\"{servers_key}\" is not an object")));
                }
                let same_url = servers
                    .value
                    .members()
                    .iter()
                    .filter(|m| m.key != name && reaches(text, m, entry_url(entry)))
                    .map(|m| m.key.clone())
                    .collect();
                match servers.value.member(name) {
                    Some(existing) => {
                        let current: Option<Value> = serde_json::from_str(&strip_comments(
                            &text[existing.value.start..existing.value.end],
                        ))
                        .ok();
                        if current.as_ref() == Some(entry) {
                            return Ok(Outcome {
                                change: Change::Unchanged,
                                name: name.to_owned(),
                                backup: None,
                                entry: entry.clone(),
                                same_url,
                            });
                        }
                        if !force {
                            return Err(ConfigError::Exists {
                                name: name.to_owned(),
                                path: path.to_owned(),
                            });
                        }
                        (
                            jsonc::replace_value(text, existing, &rendered),
                            Change::Replaced,
                            same_url,
                        )
                    }
                    None => (
                        jsonc::insert_member(text, &servers.value, name, &rendered),
                        Change::Added,
                        same_url,
                    ),
                }
            }
        }
    };
    // What was written must read back as the file it was plus this entry.
    let check = parse(path, &new_text)?;
    let written = check
        .member(servers_key)
        .and_then(|s| s.value.member(name))
        .and_then(|m| {
            serde_json::from_str::<Value>(&strip_comments(&new_text[m.value.start..m.value.end]))
                .ok()
        });
    if written.as_ref() != Some(entry) {
        return Err(shape(
            path,
            "the edit did not read back as written (please report this)",
        ));
    }
    let backup = write(path, original.as_deref(), &new_text)?;
    Ok(Outcome {
        change,
        name: name.to_owned(),
        backup,
        entry: entry.clone(),
        same_url,
    })
}

/// Remove the entry named `what`, or the one entry whose arguments hold the URL `what`.
pub fn remove(path: &Path, client: Client, what: &str) -> Result<Outcome, ConfigError> {
    let not_found = || ConfigError::NotFound {
        what: what.to_owned(),
        path: path.to_owned(),
    };
    let Some(text) = read(path)? else {
        return Err(not_found());
    };
    if text.trim().is_empty() {
        return Err(not_found());
    }
    let root = parse(path, &text)?;
    let servers = root.member(client.servers_key()).ok_or_else(not_found)?;
    let members = servers.value.members();
    let index = match members.iter().position(|m| m.key == what) {
        Some(i) => i,
        None => {
            let by_url: Vec<usize> = (0..members.len())
                .filter(|&i| reaches(&text, &members[i], Some(what)))
                .collect();
            match by_url.as_slice() {
                [i] => *i,
                [] => return Err(not_found()),
                many => {
                    let names: Vec<&str> = many.iter().map(|&i| members[i].key.as_str()).collect();
                    return Err(shape(
                        path,
                        &format!(
                            "{} entries reach {what} ({}): name the one to remove",
                            many.len(),
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let member = &members[index];
    let entry = serde_json::from_str(&strip_comments(&text[member.value.start..member.value.end]))
        .unwrap_or(Value::Null);
    let new_text = jsonc::remove_member(&text, &servers.value, index);
    parse(path, &new_text)?;
    let backup = write(path, Some(&text), &new_text)?;
    Ok(Outcome {
        change: Change::Removed,
        name: member.key.clone(),
        backup,
        entry,
        same_url: vec![],
    })
}

/// One server of a client's file, for `config list`.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub name: String,
    /// The command and its arguments, as the client will start them.
    pub command: String,
    /// The first argument that looks like a URL.
    pub url: Option<String>,
    /// `"this"` for this proxy, `"node"` for the Node mcp-remote, else `"other"`.
    pub runs: &'static str,
}

/// The servers in the client's file (none when the file does not exist).
pub fn list(path: &Path, client: Client) -> Result<Vec<Listed>, ConfigError> {
    let Some(text) = read(path)? else {
        return Ok(vec![]);
    };
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let root = parse(path, &text)?;
    if !matches!(root.kind, jsonc::Kind::Object(_)) {
        return Err(shape(path, "the file is not a JSON object"));
    }
    let Some(servers) = root.member(client.servers_key()) else {
        return Ok(vec![]);
    };
    if !matches!(servers.value.kind, jsonc::Kind::Object(_)) {
        let key = client.servers_key();
        return Err(shape(path, &format!("\"{key}\" is not an object")));
    }
    Ok(servers
        .value
        .members()
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&strip_comments(&text[m.value.start..m.value.end]))
                .unwrap_or(Value::Null);
            let command = v["command"].as_str().unwrap_or("").to_owned();
            let args: Vec<&str> = v["args"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let url = args
                .iter()
                .find(|a| a.starts_with("https://") || a.starts_with("http://"))
                .map(|u| shown_url(u))
                .or_else(|| v["url"].as_str().or(v["serverUrl"].as_str()).map(shown_url));
            let words: Vec<&str> = std::iter::once(command.as_str())
                .chain(args.iter().copied())
                .collect();
            let runs = if words.iter().any(|w| is_this_proxy(w)) {
                "this"
            } else if words
                .iter()
                .any(|w| *w == "mcp-remote" || w.starts_with("mcp-remote@"))
            {
                "node"
            } else {
                "other"
            };
            Listed {
                name: m.key.clone(),
                command: std::iter::once(command.clone())
                    .chain(args.iter().map(|a| shown_arg(a)))
                    .collect::<Vec<_>>()
                    .join(" "),
                url,
                runs,
            }
        })
        .collect())
}

/// The npm and PyPI name of this proxy.
pub const PACKAGE: &str = "mcp-remote-rs";

fn is_this_proxy(word: &str) -> bool {
    let file = word.rsplit(['/', '\\']).next().unwrap_or(word);
    word == PACKAGE
        || word.starts_with(&format!("{PACKAGE}@"))
        || (file.starts_with("mcp-remote")
            && (word.contains('/') || word.contains('\\'))
            && !word.contains("node_modules/mcp-remote/"))
}

/// A URL without its user info and query (where keys hide).
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            if u.query().is_some() {
                u.set_query(Some("…"));
            }
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// An argument for display: a header's value is not shown.
fn shown_arg(arg: &str) -> String {
    if arg.starts_with("http://") || arg.starts_with("https://") {
        return shown_url(arg);
    }
    match arg.split_once(':') {
        Some((name, value))
            if is_token(name) && !value.starts_with("${") && !value.starts_with("//") =>
        {
            format!("{name}:…")
        }
        _ => arg.to_owned(),
    }
}

fn entry_url(entry: &Value) -> Option<&str> {
    entry["args"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("https://") || a.starts_with("http://"))
}

/// Whether a member's arguments hold this URL.
fn reaches(text: &str, member: &jsonc::Member, url: Option<&str>) -> bool {
    let Some(url) = url else { return false };
    let v: Value =
        serde_json::from_str(&strip_comments(&text[member.value.start..member.value.end]))
            .unwrap_or(Value::Null);
    let args = v["args"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    args.iter()
        .any(|a| a.as_str().map(|a| same_url(a, url)).unwrap_or(false))
        || v["url"].as_str().is_some_and(|a| same_url(a, url))
}

fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Render an entry with the file's indent step, its keys in the order people write
/// them (`type`, `command`, `args`, `env`), `args` on one line.
fn render(entry: &Value, unit: &str) -> String {
    let Value::Object(map) = entry else {
        return pretty(entry, unit);
    };
    const ORDER: [&str; 4] = ["type", "command", "args", "env"];
    let keys = ORDER
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .chain(
            map.keys()
                .map(String::as_str)
                .filter(|k| !ORDER.contains(k)),
        );
    let lines: Vec<String> = keys
        .map(|key| {
            let value = &map[key];
            let text = match value {
                Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    let items: Vec<String> = items.iter().map(Value::to_string).collect();
                    format!("[{}]", items.join(", "))
                }
                _ => jsonc::reindent(&pretty(value, unit), unit, "\n"),
            };
            format!("{unit}{}: {text}", Value::String(key.to_owned()))
        })
        .collect();
    format!("{{\n{}\n}}", lines.join(",\n"))
}

fn pretty(value: &Value, unit: &str) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser).expect("a JSON value serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// A value's text without comments and trailing commas, for serde.
fn strip_comments(text: &str) -> String {
    let without_comments = strip(text, |rest, _| {
        if rest.starts_with("//") {
            Some(rest.find('\n').unwrap_or(rest.len()))
        } else if rest.starts_with("/*") {
            Some(rest.find("*/").map_or(rest.len(), |n| n + 2))
        } else {
            None
        }
    });
    strip(&without_comments, |rest, _| {
        let next = rest[1..].trim_start();
        (rest.starts_with(',') && (next.starts_with('}') || next.starts_with(']'))).then_some(1)
    })
}

/// `text` without what `skip` says to skip (its length in bytes) at a place outside
/// a string.
fn strip(text: &str, skip: impl Fn(&str, usize) -> Option<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut chars = text.char_indices();
    let mut skip_until = 0;
    while let Some((i, c)) = chars.next() {
        if i < skip_until {
            continue;
        }
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next().map(|(_, c)| c));
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        } else if let Some(n) = skip(&text[i..], i) {
            skip_until = i + n;
            continue;
        }
        out.push(c);
    }
    out
}

fn parse(path: &Path, text: &str) -> Result<jsonc::Value, ConfigError> {
    jsonc::parse(text).map_err(|error| ConfigError::Syntax {
        path: path.to_owned(),
        error,
    })
}

fn shape(path: &Path, what: &str) -> ConfigError {
    ConfigError::Shape {
        path: path.to_owned(),
        what: what.to_owned(),
    }
}

/// `path` with symbolic links followed; on Windows as it is (canonical paths there
/// start with `\\?\`, which clients and people do not expect to read).
fn resolved(path: &Path) -> PathBuf {
    if cfg!(windows) {
        return path.to_owned();
    }
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// The file's text, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ConfigError::Io {
                path: path.to_owned(),
                reason: "not UTF-8 text; nothing was changed".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Copy the file to a backup beside it (`<name>.bak`, or `.bak.1` … when taken),
/// then replace it with the new text through a temporary file and a rename, keeping
/// its permissions. Returns the backup's path.
fn write(path: &Path, original: Option<&str>, text: &str) -> Result<Option<PathBuf>, ConfigError> {
    let io = |p: &Path, e: std::io::Error| ConfigError::Io {
        path: p.to_owned(),
        reason: e.to_string(),
    };
    // Follow a symbolic link: the file people keep in a dotfiles folder stays there.
    let path = resolved(path);
    let path = path.as_path();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".into());
    let mut backup = None;
    if let Some(original) = original {
        let taken = (0..1000)
            .map(|i| {
                let suffix = if i == 0 {
                    ".bak".to_owned()
                } else {
                    format!(".bak.{i}")
                };
                dir.join(format!("{file_name}{suffix}"))
            })
            .find(|p| !p.exists())
            .ok_or_else(|| {
                io(
                    dir,
                    std::io::Error::other("1,000 backups already: remove some"),
                )
            })?;
        std::fs::write(&taken, original).map_err(|e| io(&taken, e))?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&taken, meta.permissions());
        }
        backup = Some(taken);
    }
    let temporary = dir.join(format!(".{file_name}.mcp-remote-{}", std::process::id()));
    std::fs::write(&temporary, text).map_err(|e| io(&temporary, e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temporary, meta.permissions());
    }
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        io(path, e)
    })?;
    Ok(backup)
}

// ---------------------------------------------------------------- the command

/// What starts the proxy, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// `npx -y mcp-remote-rs <url>`: nothing to install, Node.js needed.
    Npx,
    /// `uvx mcp-remote-rs <url>`: nothing to install, uv needed.
    Uvx,
    /// This installation's `mcp-remote` by its full path.
    Path,
}

/// `mcp-remote-client config …`
#[derive(clap::Parser, Debug)]
#[command(
    name = "mcp-remote-client config",
    about = "Add this proxy to an MCP client's config file, remove it, or list what the file has. The file is edited in place: comments and other entries stay as they were, and a backup (<file>.bak) is made first.",
    after_help = "Examples:\n  mcp-remote-client config add https://remote.example.com/mcp --client claude-desktop\n  mcp-remote-client config add https://remote.example.com/mcp --client cursor --header 'Authorization: Bearer sk-…'\n  mcp-remote-client config add https://remote.example.com/mcp --client vscode --via npx -- --transport http-only\n  mcp-remote-client config remove remote.example.com --client claude-desktop\n  mcp-remote-client config list"
)]
pub struct ConfigCli {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigAction {
    /// Add an entry that runs this proxy for URL (or replace one with --force).
    Add {
        /// The remote MCP server's URL.
        url: String,
        /// The MCP client whose config file is edited.
        #[arg(long, value_enum)]
        client: Client,
        /// The entry's name (default: the server's host).
        #[arg(long)]
        name: Option<String>,
        /// Edit this file instead of the client's user-level one (a project's
        /// `.cursor/mcp.json` or `.vscode/mcp.json`, say).
        #[arg(long, value_name = "FILE")]
        config_file: Option<PathBuf>,
        /// Replace an entry of the same name that runs something else.
        #[arg(long)]
        force: bool,
        /// What the client runs: npx, uvx, or this installation's binary by its path
        /// (default: how this was started: npx or uvx when from their caches, else path).
        #[arg(long, value_enum)]
        via: Option<Via>,
        /// A header for every request, "Name: value" (repeatable). The value goes in
        /// the entry's "env", and the argument says --header Name:${MCP_HEADER_NAME}:
        /// no secret in the arguments, no space in one.
        #[arg(long, value_name = "HEADER")]
        header: Vec<String>,
        /// An environment variable for the proxy, KEY=VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// More mcp-remote arguments, after `--`, one element each.
        #[arg(last = true, value_name = "MCP-REMOTE ARGS")]
        extra: Vec<String>,
    },
    /// Remove the entry with this name, or the one entry that reaches this URL.
    Remove {
        /// The entry's name or its server URL.
        what: String,
        #[arg(long, value_enum)]
        client: Client,
        #[arg(long, value_name = "FILE")]
        config_file: Option<PathBuf>,
    },
    /// List the MCP servers in each client's config file (or one client's), and which
    /// of them run this proxy or the Node mcp-remote.
    List {
        #[arg(long, value_enum)]
        client: Option<Client>,
        #[arg(long, value_name = "FILE", requires = "client")]
        config_file: Option<PathBuf>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Run `mcp-remote-client config …` (`args` start with the program name); the exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    use clap::Parser as _;
    let cli = match ConfigCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match execute(cli.action) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mcp-remote-client config: {e}");
            1
        }
    }
}

fn file_of(client: Client, config_file: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    match config_file {
        Some(f) => Ok(f),
        None => {
            let (home, app_data) = user_folders()?;
            Ok(client.config_path(&home, &app_data))
        }
    }
}

/// How this program was started, for the default `--via`: from npx's or uv's cache,
/// or installed.
fn started_via() -> Via {
    if let Ok(v) = std::env::var("MCP_REMOTE_LAUNCHER") {
        match v.as_str() {
            "npx" | "npm" => return Via::Npx,
            "uvx" => return Via::Uvx,
            _ => {}
        }
    }
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    if exe.contains("/_npx/") {
        Via::Npx
    } else if exe.contains("/uv/") && exe.contains("/archive-v") {
        Via::Uvx
    } else {
        Via::Path
    }
}

/// This installation's `mcp-remote`: beside this program.
fn this_proxy() -> String {
    let name = if cfg!(windows) {
        "mcp-remote.exe"
    } else {
        "mcp-remote"
    };
    std::env::current_exe()
        .ok()
        .map(|p| resolved(&p))
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned())
}

fn execute(action: ConfigAction) -> Result<(), ConfigError> {
    match action {
        ConfigAction::Add {
            url,
            client,
            name,
            config_file,
            force,
            via,
            header,
            env,
            extra,
        } => {
            let parsed = url::Url::parse(&url).map_err(|e| ConfigError::Shape {
                path: PathBuf::from(&url),
                what: format!("not a URL ({e})"),
            })?;
            check_url(&parsed, &extra)?;
            let env = env
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .filter(|(k, _)| !k.is_empty())
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| ConfigError::Shape {
                            path: PathBuf::from("--env"),
                            what: format!(
                                "expected KEY=VALUE, got \"{}\"",
                                kv.split('=').next().unwrap_or("")
                            ),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let launch = match via.unwrap_or_else(started_via) {
                Via::Npx => Launch::Npx(PACKAGE.into()),
                Via::Uvx => Launch::Uvx(PACKAGE.into()),
                Via::Path => Launch::Path(this_proxy()),
            };
            let entry = Entry {
                url: url.clone(),
                launch,
                headers: header,
                env,
                extra_args: extra,
            }
            .to_json(client, cfg!(windows))?;
            let name = name.unwrap_or_else(|| default_name(&parsed));
            let path = file_of(client, config_file)?;
            let outcome = add(&path, client, &name, &entry, force)?;
            let shown = render(&outcome.entry, "  ");
            let shown = redact_env(&shown, &outcome.entry);
            match outcome.change {
                Change::Unchanged => println!(
                    "{} already has \"{}\" as it would be written: nothing changed ({}).",
                    client.title(),
                    outcome.name,
                    path.display()
                ),
                change => {
                    let verb = if change == Change::Replaced {
                        "Replaced"
                    } else {
                        "Added"
                    };
                    println!(
                        "{verb} \"{}\" in {}'s config: {}",
                        outcome.name,
                        client.title(),
                        path.display()
                    );
                    if let Some(b) = &outcome.backup {
                        println!("Backup of the file as it was: {}", b.display());
                    }
                    println!(
                        "\n  \"{}\": {}\n",
                        outcome.name,
                        shown.replace('\n', "\n  ")
                    );
                    println!(
                        "Restart {} (or reload its MCP servers) to use it.",
                        client.title()
                    );
                }
            }
            if !outcome.same_url.is_empty() {
                println!(
                    "Note: {} also reach{} this server: {} (remove with `mcp-remote-client config remove <name> --client …`).",
                    if outcome.same_url.len() == 1 { "another entry" } else { "other entries" },
                    if outcome.same_url.len() == 1 { "es" } else { "" },
                    outcome.same_url.join(", ")
                );
            }
            Ok(())
        }
        ConfigAction::Remove {
            what,
            client,
            config_file,
        } => {
            let path = file_of(client, config_file)?;
            let outcome = remove(&path, client, &what)?;
            println!(
                "Removed \"{}\" from {}'s config: {}",
                outcome.name,
                client.title(),
                path.display()
            );
            if let Some(b) = &outcome.backup {
                println!("Backup of the file as it was: {}", b.display());
            }
            Ok(())
        }
        ConfigAction::List {
            client,
            config_file,
            json,
        } => {
            let clients: Vec<Client> = match client {
                Some(c) => vec![c],
                None => Client::ALL.to_vec(),
            };
            let mut doc = Vec::new();
            for c in clients {
                let path = file_of(c, config_file.clone())?;
                let exists = path.exists();
                let servers = match list(&path, c) {
                    Ok(s) => s,
                    Err(e) if client.is_none() => {
                        // One unreadable file does not hide the others.
                        eprintln!("mcp-remote-client config: {e}");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if json {
                    doc.push(json!({"client": format!("{c:?}"), "title": c.title(), "file": path, "exists": exists, "servers": servers}));
                    continue;
                }
                if !exists && client.is_none() {
                    continue;
                }
                println!(
                    "{} ({}{})",
                    c.title(),
                    path.display(),
                    if exists { "" } else { ", no such file" }
                );
                if servers.is_empty() && exists {
                    println!("  no MCP servers");
                }
                for s in &servers {
                    let runs = match s.runs {
                        "this" => " [this proxy]",
                        "node" => " [Node mcp-remote]",
                        _ => "",
                    };
                    println!("  {}{runs}: {}", s.name, s.command);
                }
            }
            if json {
                println!("{}", Value::Array(doc));
            }
            Ok(())
        }
    }
}

/// The proxy refuses plain http to anything but loopback without `--allow-http`:
/// say so now rather than in the client's log later.
fn check_url(url: &url::Url, extra: &[String]) -> Result<(), ConfigError> {
    let bad = |what: &str| ConfigError::Shape {
        path: PathBuf::from(url.as_str()),
        what: what.to_owned(),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                None => false,
            };
            if loopback || extra.iter().any(|a| a == "--allow-http") {
                Ok(())
            } else {
                Err(bad("plain http to a host that is not this machine: use https, or add `-- --allow-http` if you mean it"))
            }
        }
        _ => Err(bad("not an http(s) URL")),
    }
}

/// The entry for the terminal: `env` values (secrets, often) shown as `…`.
fn redact_env(shown: &str, entry: &Value) -> String {
    let mut out = shown.to_owned();
    if let Some(env) = entry["env"].as_object() {
        for value in env
            .values()
            .filter_map(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            out = out.replace(&Value::String(value.to_owned()).to_string(), "\"…\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_starts_npx_through_cmd() {
        let entry = Entry {
            url: "https://example.com/mcp".into(),
            launch: Launch::Npx(PACKAGE.into()),
            headers: vec![],
            env: vec![],
            extra_args: vec![],
        };
        let v = entry.to_json(Client::ClaudeDesktop, true).unwrap();
        assert_eq!(v["command"], "cmd");
        assert_eq!(
            v["args"],
            json!(["/c", "npx", "-y", PACKAGE, "https://example.com/mcp"])
        );
        let with_query = Entry {
            url: "https://example.com/mcp?a=1&b=2".into(),
            ..entry.clone()
        };
        let refused = with_query
            .to_json(Client::Cursor, true)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--via uvx"), "{refused}");
        assert!(with_query.to_json(Client::Cursor, false).is_ok());
        let v = entry.to_json(Client::Vscode, false).unwrap();
        assert_eq!(
            v,
            json!({"type": "stdio", "command": "npx", "args": ["-y", PACKAGE, "https://example.com/mcp"]})
        );
    }

    #[test]
    fn each_client_has_its_file() {
        let (home, app) = (Path::new("/h"), Path::new("/h/.config"));
        let files: Vec<PathBuf> = Client::ALL
            .iter()
            .map(|c| c.config_path(home, app))
            .collect();
        assert_eq!(
            files,
            [
                "/h/.config/Claude/claude_desktop_config.json",
                "/h/.cursor/mcp.json",
                "/h/.codeium/windsurf/mcp_config.json",
                "/h/.claude.json",
                "/h/.config/Code/User/mcp.json"
            ]
            .map(PathBuf::from)
        );
    }
}
