//! `mcp-browser`: a headless stand-in for a web browser, for tests of a client's OAuth
//! flow. A test names it in `$BROWSER` (or the client's browser-command option); the client
//! runs it with the authorization URL as its first argument.
//!
//! It GETs the URL without following redirects; when the answer is a `3xx` whose
//! `Location` is a loopback `http` URL (the client's callback), it GETs that too, and so on
//! for at most [`MAX_HOPS`] redirects. It prints each status on stderr and exits `0` when
//! the last one is `2xx`, `1` otherwise (`2` on a usage error). Only `http` URLs on
//! loopback hosts are fetched: there is no TLS here, and a test must not reach the network.
//!
//! ```text
//! mcp-browser <url>
//!   MCP_BROWSER_LOG=<file>      append <url> and a newline to <file> first, so a test can
//!                               count the launches
//!   MCP_BROWSER_DELAY_MS=<ms>   wait this long (at most 10 minutes) before fetching
//!   MCP_BROWSER_NO_FOLLOW=1     only log the URL: fetch nothing, exit 0 (a user who never
//!                               finishes signing in)
//! ```

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// The most redirects followed after the first request.
const MAX_HOPS: usize = 5;
/// How long connecting, and each read or write, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response body read (and thrown away).
const MAX_BODY: u64 = 1024 * 1024;
/// The longest `MCP_BROWSER_DELAY_MS` honoured.
const MAX_DELAY: Duration = Duration::from_secs(600);
/// The most header lines read from one response.
const MAX_HEADER_LINES: usize = 200;

/// An `http` URL taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// The host as written, brackets included for IPv6 (`[::1]`), for the `Host` header.
    host: String,
    /// The port; 80 when the URL names none.
    port: u16,
    /// The path and query, at least `/`; the fragment is dropped.
    path: String,
}

/// Parses an absolute `http` URL; `https` and every other scheme are refused.
fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not an absolute URL: {url}"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" => {}
        "https" => return Err(format!("https is not supported by this shim: {url}")),
        other => return Err(format!("refusing to open a {other}: URL")),
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], rest[at..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if authority.contains('@') {
        return Err(format!("refusing a URL with credentials: {url}"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 host in {url}"))?;
        (format!("[{inside}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(port) => port.parse().map_err(|_| format!("bad port in {url}"))?,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("no host in {url}"));
    }
    Ok(Target { host, port, path })
}

/// Whether the host is a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolves a `Location` against the URL it answered: absolute URLs stay, `/path` keeps
/// the host. Other relative forms are not used by the servers this shim meets.
fn resolve(location: &str, base: &Target) -> String {
    if location.starts_with('/') && !location.starts_with("//") {
        format!("http://{}:{}{location}", base.host, base.port)
    } else {
        location.to_owned()
    }
}

/// Connects to the first of the host's addresses that answers, as browsers do: a
/// callback server may listen on `127.0.0.1` only while `localhost` resolves to `::1` too.
fn connect(target: &Target) -> Result<(TcpStream, SocketAddr), String> {
    let bare = target.host.trim_start_matches('[').trim_end_matches(']');
    let addresses = (bare, target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?;
    let mut last_error = format!("no address for {}", target.host);
    for address in addresses {
        match TcpStream::connect_timeout(&address, IO_TIMEOUT) {
            Ok(stream) => return Ok((stream, address)),
            Err(error) => last_error = format!("cannot connect to {address}: {error}"),
        }
    }
    Err(last_error)
}

/// Reads and discards a chunked body (RFC 9112 §7.1), at most [`MAX_BODY`] of it.
fn skip_chunked(reader: &mut impl BufRead) -> std::io::Result<()> {
    let mut total = 0u64;
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line)? == 0 {
            return Ok(());
        }
        let size = size_line.trim().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size, 16).unwrap_or(0);
        if size == 0 {
            // Trailer fields, then the blank line that ends the message.
            for _ in 0..MAX_HEADER_LINES {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    break;
                }
            }
            return Ok(());
        }
        total += size;
        if total > MAX_BODY {
            return Ok(());
        }
        // The chunk and its CRLF.
        std::io::copy(&mut reader.by_ref().take(size + 2), &mut std::io::sink())?;
    }
}

/// GETs `target` and returns the status and the `Location` header, reading the body (up
/// to [`MAX_BODY`]) so the server sees its answer taken in full.
fn get(target: &Target) -> Result<(u16, Option<String>), String> {
    let (mut stream, address) = connect(target)?;
    let io = |e: std::io::Error| format!("talking to {address}: {e}");
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: mcp-browser\r\n\
         Accept: text/html,*/*\r\nConnection: close\r\n\r\n",
        target.path, target.host, target.port
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(io)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line from {address}: {status_line:?}"))?;
    let mut location = None;
    let mut length = None;
    let mut chunked = false;
    for _ in 0..MAX_HEADER_LINES {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("location") {
                location = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    // The body is read to its end so the server sees its answer taken; how it ends does
    // not matter for the outcome, so a broken one is ignored. Without framing it ends when
    // the server closes, which `Connection: close` asks for.
    if chunked {
        let _ = skip_chunked(&mut reader);
    } else {
        let limit = length.unwrap_or(MAX_BODY).min(MAX_BODY);
        let _ = std::io::copy(&mut reader.by_ref().take(limit), &mut std::io::sink());
    }
    Ok((status, location))
}

/// Appends the URL to the file `MCP_BROWSER_LOG` names, if any.
fn log_launch(url: &str) {
    let Some(path) = std::env::var_os("MCP_BROWSER_LOG") else {
        return;
    };
    let line = format!("{url}\n");
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("mcp-browser: cannot append to {path:?}: {error}");
    }
}

/// Follows the URL and its loopback redirects; the final status.
fn browse(url: &str) -> Result<u16, String> {
    let mut target = parse_url(url)?;
    if !is_loopback(&target.host) {
        return Err(format!("refusing a non-loopback host: {}", target.host));
    }
    for hop in 0..=MAX_HOPS {
        let (status, location) = get(&target)?;
        eprintln!(
            "mcp-browser: GET http://{}:{}{} -> {status}",
            target.host, target.port, target.path
        );
        let Some(location) = location.filter(|_| (300..400).contains(&status)) else {
            return Ok(status);
        };
        if hop == MAX_HOPS {
            return Err(format!("more than {MAX_HOPS} redirects"));
        }
        let next = resolve(&location, &target);
        match parse_url(&next) {
            Ok(next) if is_loopback(&next.host) => target = next,
            _ => {
                eprintln!("mcp-browser: not following a redirect off loopback http: {next}");
                return Ok(status);
            }
        }
    }
    Err(format!("more than {MAX_HOPS} redirects"))
}

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: mcp-browser <url>");
        return ExitCode::from(2);
    };
    log_launch(&url);
    let delay = std::env::var("MCP_BROWSER_DELAY_MS")
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    if let Some(delay) = delay {
        std::thread::sleep(delay.min(MAX_DELAY));
    }
    if std::env::var("MCP_BROWSER_NO_FOLLOW").is_ok_and(|v| v == "1") {
        eprintln!("mcp-browser: recorded {url}, not opening it");
        return ExitCode::SUCCESS;
    }
    match browse(&url) {
        Ok(status) => {
            eprintln!("mcp-browser: final status {status}");
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("mcp-browser: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_schemes_are_refused() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/cb?code=1#x").unwrap(),
            Target {
                host: "127.0.0.1".to_owned(),
                port: 8080,
                path: "/cb?code=1".to_owned()
            }
        );
        let v6 = parse_url("http://[::1]:9?a=b").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.path.as_str()),
            ("[::1]", 9, "/?a=b")
        );
        assert_eq!(parse_url("http://localhost").unwrap().port, 80);
        assert!(parse_url("javascript:alert(1)").is_err());
        assert!(parse_url("file:///etc/passwd").is_err());
        assert!(parse_url("https://127.0.0.1/").is_err());
        assert!(parse_url("http://user@127.0.0.1/").is_err());
    }

    #[test]
    fn chunked_bodies_are_skipped_to_their_end() {
        let mut input = &b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"[..];
        skip_chunked(&mut input).unwrap();
        assert_eq!(input, b"NEXT");
    }

    #[test]
    fn loopback_hosts_and_relative_locations() {
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("example.com") && !is_loopback("10.0.0.1"));
        let base = parse_url("http://127.0.0.1:1/a").unwrap();
        assert_eq!(resolve("/cb?x=1", &base), "http://127.0.0.1:1/cb?x=1");
        assert_eq!(resolve("http://[::1]:2/", &base), "http://[::1]:2/");
    }
}
