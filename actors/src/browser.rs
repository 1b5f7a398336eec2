//! Opening the authorization URL in the user's browser.
//!
//! The caller logs the URL first (through the non-blocking log, and into a file
//! in the config folder), so a user can copy it when no browser opens (headless
//! machines, SSH) — never with a blocking write to a stderr nobody reads. Only `http(s)` URLs are opened
//! (plain http only to loopback hosts or with `--allow-http`), and never through a shell: the program
//! is `$BROWSER` when set (its first `:`-separated entry; `%s` is replaced by
//! the URL, else the URL is the last argument), else the platform's opener.

use machines::transport::is_loopback_host;
use std::process::{Command, Stdio};
use url::Url;

/// Why the URL was not opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// The URL is not one a browser should be sent to.
    #[error("refusing to open a {0} URL in the browser")]
    Refused(String),
    /// The opener could not be started.
    #[error("could not start the browser ({0}); open the URL above by hand")]
    Spawn(String),
}

/// Whether a browser can be shown to the user on this machine: `$BROWSER` is set,
/// or there is a display — on Linux and other Unix systems `DISPLAY` or
/// `WAYLAND_DISPLAY`, on macOS anything but an SSH session, on Windows always. Where
/// there is none (SSH, containers, WSL without a display), a sign-in uses the device
/// authorization grant when the authorization server offers it.
pub fn usable() -> bool {
    usable_with(|name| std::env::var_os(name).filter(|v| !v.is_empty()).is_some())
}

fn usable_with(set: impl Fn(&str) -> bool) -> bool {
    if set("BROWSER") {
        return true;
    }
    if cfg!(windows) {
        true
    } else if cfg!(target_os = "macos") {
        !(set("SSH_CONNECTION") || set("SSH_TTY"))
    } else {
        set("DISPLAY") || set("WAYLAND_DISPLAY")
    }
}

/// Print the URL and try to open it.
pub fn open(url: &Url, allow_http: bool) -> Result<(), BrowserError> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url) || allow_http => {}
        other => return Err(BrowserError::Refused(other.to_owned())),
    }
    let (program, args) = opener(url.as_str());
    Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|e| BrowserError::Spawn(format!("{program}: {e}")))
}

fn opener(url: &str) -> (String, Vec<String>) {
    opener_for(std::env::var("BROWSER").ok().as_deref(), url, cfg!(windows))
}

/// The program and arguments for `url`, from `$BROWSER` (`browser`) or the platform's
/// opener. On Windows `$BROWSER`'s entries are separated by `;` (a `:` is in every
/// drive letter) and an entry that names an existing program is taken whole (its
/// path may hold spaces: `C:\Program Files\…\firefox.exe`).
fn opener_for(browser: Option<&str>, url: &str, windows: bool) -> (String, Vec<String>) {
    if let Some(browser) = browser.filter(|b| !b.trim().is_empty()) {
        let first = browser
            .split(if windows { ';' } else { ':' })
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let whole = first.trim_matches('"');
        if windows && std::path::Path::new(whole).is_file() {
            return (whole.to_owned(), vec![url.to_owned()]);
        }
        let mut parts: Vec<String> = first.split_whitespace().map(str::to_owned).collect();
        if !parts.is_empty() {
            let program = parts.remove(0);
            if parts.iter().any(|p| p.contains("%s")) {
                let args = parts.into_iter().map(|p| p.replace("%s", url)).collect();
                return (program, args);
            }
            parts.push(url.to_owned());
            return (program, parts);
        }
    }
    if cfg!(target_os = "macos") {
        ("open".into(), vec![url.into()])
    } else if windows {
        (
            "rundll32".into(),
            vec!["url.dll,FileProtocolHandler".into(), url.into()],
        )
    } else {
        ("xdg-open".into(), vec![url.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_display_or_a_browser_makes_it_usable() {
        let with = |names: &'static [&'static str]| usable_with(move |n| names.contains(&n));
        assert!(!with(&[]), "no display: headless");
        assert!(
            !with(&["SSH_CONNECTION", "SSH_TTY"]),
            "SSH without X forwarding"
        );
        assert!(with(&["DISPLAY"]));
        assert!(with(&["SSH_CONNECTION", "DISPLAY"]), "X forwarding");
        assert!(with(&["WAYLAND_DISPLAY"]));
        assert!(with(&["BROWSER"]), "a browser the user named");
    }

    #[test]
    fn browser_names_each_platform_way() {
        let url = "https://as.example/authorize?a=1&b=2";
        assert_eq!(
            opener_for(Some("firefox --new-window %s:chromium"), url, false),
            ("firefox".into(), vec!["--new-window".into(), url.into()])
        );
        // A Windows path with a space, taken whole when it names a program.
        let dir = std::env::temp_dir().join(format!("mcp remote browser {}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("fire fox.exe");
        std::fs::write(&exe, b"").unwrap();
        let named = format!("{};other.exe", exe.display());
        assert_eq!(
            opener_for(Some(&named), url, true),
            (exe.display().to_string(), vec![url.into()])
        );
        if !cfg!(target_os = "macos") {
            assert_eq!(
                opener_for(None, url, true),
                (
                    "rundll32".into(),
                    vec!["url.dll,FileProtocolHandler".into(), url.into()]
                )
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_other_schemes() {
        assert!(matches!(
            open(&Url::parse("javascript:alert(1)").unwrap(), true),
            Err(BrowserError::Refused(_))
        ));
        assert!(matches!(
            open(&Url::parse("file:///etc/passwd").unwrap(), true),
            Err(BrowserError::Refused(_))
        ));
    }
}
