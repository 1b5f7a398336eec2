//! `mcp-remote-client config add|remove|list` on copies of real-shaped config files of
//! each MCP client, found where the client keeps them (a temporary HOME and
//! XDG_CONFIG_HOME): every other byte kept, a backup made, nothing lost on a broken
//! file, no secret in the arguments or on the terminal.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLIENT: &str = env!("CARGO_BIN_EXE_mcp-remote-client");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/client-configs");

struct Home(PathBuf);

impl Home {
    fn new(name: &str) -> Home {
        let dir =
            std::env::temp_dir().join(format!("mcp-remote-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Home(dir)
    }

    /// The per-user application folder under this home, as each platform has it.
    fn app_data(&self) -> PathBuf {
        if cfg!(windows) {
            self.0.join("AppData").join("Roaming")
        } else if cfg!(target_os = "macos") {
            self.0.join("Library").join("Application Support")
        } else {
            self.0.join(".config")
        }
    }

    /// Where each client keeps its user-level file, under this home.
    fn file(&self, client: &str) -> PathBuf {
        let h = &self.0;
        match client {
            "claude-desktop" => self.app_data().join("Claude/claude_desktop_config.json"),
            "cursor" => h.join(".cursor/mcp.json"),
            "windsurf" => h.join(".codeium/windsurf/mcp_config.json"),
            "claude-code" => h.join(".claude.json"),
            "vscode" => self.app_data().join("Code/User/mcp.json"),
            _ => unreachable!(),
        }
    }

    fn place(&self, client: &str, fixture: &str) -> (PathBuf, String) {
        let path = self.file(client);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(fixture)).unwrap();
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(CLIENT)
            .arg("config")
            .args(args)
            .env("HOME", &self.0)
            .env("USERPROFILE", &self.0)
            .env("XDG_CONFIG_HOME", self.0.join(".config"))
            .env("APPDATA", self.0.join("AppData").join("Roaming"))
            .env_remove("MCP_REMOTE_LAUNCHER")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn backups(&self, path: &Path) -> Vec<PathBuf> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}.bak"))
            })
            .collect();
        found.sort();
        found
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// JSON with comments and trailing commas, read the simple way a test can trust:
/// drop `//` and `/* */` outside strings, then trailing commas.
fn loose_json(text: &str) -> Value {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    let mut cleaned = String::new();
    let bytes: Vec<char> = out.chars().collect();
    let mut in_string = false;
    for (i, &c) in bytes.iter().enumerate() {
        if in_string {
            if c == '"' && bytes[i - 1] != '\\' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' {
            let next = bytes[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        cleaned.push(c);
    }
    serde_json::from_str(&cleaned).unwrap_or_else(|e| panic!("{e}: {cleaned}"))
}

const URL: &str = "https://remote.example.com/mcp";

#[test]
fn add_then_remove_gives_back_every_byte_for_each_client() {
    for (client, fixture, servers_key, typed) in [
        (
            "claude-desktop",
            "claude_desktop_config.json",
            "mcpServers",
            false,
        ),
        ("cursor", "cursor_mcp.json", "mcpServers", false),
        ("windsurf", "windsurf_mcp_config.json", "mcpServers", false),
        ("claude-code", "claude.json", "mcpServers", true),
        ("vscode", "vscode_mcp.json", "servers", true),
    ] {
        let home = Home::new(client);
        let (path, original) = home.place(client, fixture);
        let (code, stdout, stderr) = home.run(&["add", URL, "--client", client, "--via", "npx"]);
        assert_eq!(code, 0, "{client}: {stderr}");
        assert!(stdout.contains("remote.example.com"), "{client}: {stdout}");
        let added = std::fs::read_to_string(&path).unwrap();
        assert_ne!(added, original, "{client}");
        // The backup is the file as it was.
        let backups = home.backups(&path);
        assert_eq!(backups.len(), 1, "{client}");
        assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), original);
        // Every entry that was there is still there, unchanged, and ours is added.
        let (before, after) = (loose_json(&original), loose_json(&added));
        let mut expected_entry = json!({
            "command": "npx",
            "args": ["-y", "mcp-remote-rs", URL],
        });
        if typed {
            expected_entry["type"] = json!("stdio");
        }
        assert_eq!(
            after[servers_key]["remote.example.com"], expected_entry,
            "{client}: {added}"
        );
        let mut expected = before.clone();
        expected
            .as_object_mut()
            .unwrap()
            .entry(servers_key)
            .or_insert(json!({}))["remote.example.com"] = expected_entry;
        assert_eq!(after, expected, "{client}: {added}");
        // Comments stay where they were.
        for comment in original
            .lines()
            .filter_map(|l| l.find("//").map(|i| &l[i..]))
        {
            assert!(added.contains(comment), "{client}: lost {comment}");
        }
        // Remove, by URL: the file is the original, byte for byte.
        let (code, _, stderr) = home.run(&["remove", URL, "--client", client]);
        assert_eq!(code, 0, "{client}: {stderr}");
        let removed = std::fs::read_to_string(&path).unwrap();
        if before.get(servers_key).is_some() {
            assert_eq!(removed, original, "{client}");
        } else {
            // The object made for the entry stays, empty; all else as it was.
            let mut expected = before.clone();
            expected[servers_key] = json!({});
            assert_eq!(loose_json(&removed), expected, "{client}: {removed}");
            let key_at = removed.find(&format!("\"{servers_key}\"")).unwrap();
            let kept = removed[..key_at].trim_end().trim_end_matches(',');
            assert!(original.starts_with(kept), "{client}: {removed}");
        }
        assert_eq!(home.backups(&path).len(), 2, "{client}");
    }
}

#[test]
fn claude_code_gets_a_user_level_entry_not_a_projects() {
    let home = Home::new("claude-code-scope");
    let (path, _) = home.place("claude-code", "claude.json");
    let (code, _, stderr) = home.run(&[
        "add",
        URL,
        "--client",
        "claude-code",
        "--name",
        "remote",
        "--via",
        "uvx",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        v["mcpServers"]["remote"],
        json!({"type": "stdio", "command": "uvx", "args": ["mcp-remote-rs", URL]})
    );
    let project = &v["projects"]["/home/me/src/app"]["mcpServers"];
    assert_eq!(project.as_object().unwrap().len(), 1, "{project}");
    assert_eq!(v["numStartups"], 42);
}

#[test]
fn a_missing_file_is_made_with_its_folders_and_no_backup() {
    for client in [
        "claude-desktop",
        "cursor",
        "windsurf",
        "claude-code",
        "vscode",
    ] {
        let home = Home::new(&format!("missing-{client}"));
        let path = home.file(client);
        assert!(!path.exists());
        let (code, _, stderr) = home.run(&["add", URL, "--client", client, "--via", "npx"]);
        assert_eq!(code, 0, "{client}: {stderr}");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let key = if client == "vscode" {
            "servers"
        } else {
            "mcpServers"
        };
        assert_eq!(
            v[key]["remote.example.com"]["args"],
            json!(["-y", "mcp-remote-rs", URL]),
            "{client}"
        );
        assert!(home.backups(&path).is_empty(), "{client}");
        // An empty file is a missing one.
        std::fs::write(&path, "\n").unwrap();
        let (code, _, stderr) = home.run(&["add", URL, "--client", client, "--via", "npx"]);
        assert_eq!(code, 0, "{client}: {stderr}");
    }
}

#[test]
fn a_broken_file_is_named_with_its_line_and_left_alone() {
    for broken in [
        "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\"\n  }\n",
        "{\"mcpServers\": [1, 2]}",
        "[]",
        "{\"mcpServers\": {\"a\": tru}}",
        "\u{0}\u{1}binary",
    ] {
        let home = Home::new("broken");
        let path = home.file("cursor");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, broken).unwrap();
        let (code, stdout, stderr) = home.run(&["add", URL, "--client", "cursor", "--via", "npx"]);
        assert_eq!(code, 1, "{broken:?}: {stdout}");
        assert!(
            stderr.contains("nothing was changed"),
            "{broken:?}: {stderr}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
        assert!(home.backups(&path).is_empty(), "{broken:?}");
        // remove and list say so too, and change nothing.
        let (code, _, stderr) = home.run(&["remove", "a", "--client", "cursor"]);
        assert_eq!(code, 1, "{stderr}");
        let (code, _, stderr) = home.run(&["list", "--client", "cursor"]);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    }
    let home = Home::new("broken-line");
    let path = home.file("cursor");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "{\n  \"mcpServers\": {\n    \"a\": 1\n    \"b\": 2\n  }\n}\n",
    )
    .unwrap();
    let (_, _, stderr) = home.run(&["add", URL, "--client", "cursor"]);
    assert!(stderr.contains("line 4, column 5"), "{stderr}");
}

#[test]
fn an_entry_of_that_name_is_replaced_only_with_force() {
    let home = Home::new("clash");
    let (path, original) = home.place("claude-desktop", "claude_desktop_config.json");
    let args = [
        "add",
        "https://mcp.linear.app/mcp",
        "--client",
        "claude-desktop",
        "--name",
        "linear",
        "--via",
        "npx",
    ];
    let (code, _, stderr) = home.run(&args);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--force") && stderr.contains("\"linear\""),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert!(home.backups(&path).is_empty());

    let (code, stdout, stderr) = home.run(&[&args[..], &["--force"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Replaced \"linear\""), "{stdout}");
    let v = loose_json(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        v["mcpServers"]["linear"]["args"],
        json!(["-y", "mcp-remote-rs", "https://mcp.linear.app/mcp"])
    );
    assert_eq!(
        v["mcpServers"]["filesystem"],
        loose_json(&original)["mcpServers"]["filesystem"]
    );
    assert_eq!(home.backups(&path).len(), 1);

    // The same again: nothing to do, no write, no second backup.
    let written = std::fs::read_to_string(&path).unwrap();
    let (code, stdout, _) = home.run(&args);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
    assert_eq!(home.backups(&path).len(), 1);
}

#[test]
fn a_header_secret_goes_to_env_not_to_args_nor_the_terminal() {
    let home = Home::new("secret");
    let (code, stdout, stderr) = home.run(&[
        "add",
        URL,
        "--client",
        "cursor",
        "--via",
        "npx",
        "--header",
        "Authorization: Bearer sk-very-secret-1",
        "--header",
        "X-Tenant:${TENANT}",
        "--env",
        "MCP_REMOTE_CONFIG_DIR=/tmp/auth dir",
        "--",
        "--transport",
        "http-only",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains("sk-very-secret-1") && !stderr.contains("sk-very-secret-1"),
        "{stdout}"
    );
    let v = loose_json(&std::fs::read_to_string(home.file("cursor")).unwrap());
    let entry = &v["mcpServers"]["remote.example.com"];
    assert_eq!(
        entry["args"],
        json!([
            "-y",
            "mcp-remote-rs",
            URL,
            "--header",
            "Authorization:${MCP_HEADER_AUTHORIZATION}",
            "--header",
            "X-Tenant:${TENANT}",
            "--transport",
            "http-only"
        ])
    );
    assert_eq!(
        entry["env"],
        json!({"MCP_HEADER_AUTHORIZATION": "Bearer sk-very-secret-1", "MCP_REMOTE_CONFIG_DIR": "/tmp/auth dir"})
    );
    for arg in entry["args"].as_array().unwrap() {
        assert!(!arg.as_str().unwrap().contains(' '), "a space in {arg}");
    }
    let (code, _, stderr) = home.run(&["add", URL, "--client", "cursor", "--header", "no colon"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Name: value"), "{stderr}");
    let (code, _, stderr) =
        home.run(&["add", "http://remote.example.com/mcp", "--client", "cursor"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--allow-http"), "{stderr}");
}

#[test]
fn list_shows_every_clients_servers_and_which_run_a_proxy() {
    let home = Home::new("list");
    home.place("claude-desktop", "claude_desktop_config.json");
    home.place("vscode", "vscode_mcp.json");
    let (code, _, stderr) = home.run(&[
        "add",
        URL,
        "--client",
        "claude-desktop",
        "--via",
        "npx",
        "--header",
        "Authorization: Bearer sk-listed",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = home.run(&["list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Claude Desktop") && stdout.contains("VS Code"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Cursor"),
        "a client without a file is not listed: {stdout}"
    );
    assert!(stdout.contains("linear [Node mcp-remote]"), "{stdout}");
    assert!(
        stdout.contains("remote.example.com [this proxy]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Perplexity: npx -y server-perplexity-ask"),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-listed"), "{stdout}");
    let (code, stdout, _) = home.run(&["list", "--json"]);
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let desktop = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"] == "Claude Desktop")
        .unwrap();
    let runs: Vec<(&str, &str)> = desktop["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["runs"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [
            ("filesystem", "other"),
            ("linear", "node"),
            ("remote.example.com", "this")
        ]
    );
}

#[test]
fn windows_line_ends_stay_windows_line_ends() {
    let home = Home::new("crlf");
    let (path, original) = home.place("claude-desktop", "crlf_claude_desktop_config.json");
    let (code, _, stderr) = home.run(&["add", URL, "--client", "claude-desktop", "--via", "npx"]);
    assert_eq!(code, 0, "{stderr}");
    let added = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        added.matches('\n').count(),
        added.matches("\r\n").count(),
        "{added:?}"
    );
    assert!(added.len() > original.len());
    let (code, _, _) = home.run(&["remove", "remote.example.com", "--client", "claude-desktop"]);
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn help_names_the_clients_and_the_flags() {
    let home = Home::new("help");
    let (code, stdout, _) = home.run(&["add", "--help"]);
    assert_eq!(code, 0);
    for word in [
        "claude-desktop",
        "cursor",
        "windsurf",
        "claude-code",
        "vscode",
        "--force",
        "--via",
        "--header",
    ] {
        assert!(stdout.contains(word), "{word}: {stdout}");
    }
    let (code, _, stderr) = home.run(&["add", URL]);
    assert_eq!(code, 2, "--client is required: {stderr}");
}
