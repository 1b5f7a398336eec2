//! A deliberately small HTTP/1.1 client over `tokio::net::TcpStream` for the testbed's own
//! tests: one request per connection (`Connection: close`), bodies framed by
//! `Content-Length`, chunked encoding or end of connection, and an incremental SSE reader.
//! Every read is bounded by [`READ_TIMEOUT`], so a wrong server fails a test instead of
//! hanging it.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest a single read may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Accept` value a conforming MCP client sends on POST.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// How the response body is delimited.
enum Framing {
    /// `Content-Length`: this many bytes are left.
    Length(usize),
    /// `Transfer-Encoding: chunked`; `true` once the last chunk was read.
    Chunked(bool),
    /// Until the server closes; `true` once it did.
    UntilClose(bool),
}

/// A response whose body has not been read yet.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The connection, positioned at the body.
    reader: BufReader<TcpStream>,
    /// How the body ends.
    framing: Framing,
    /// Body text read but not yet split into SSE events.
    sse_buffer: String,
}

/// One SSE event (or a block of comment lines only).
#[derive(Debug, Default, Clone)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field.
    pub event: Option<String>,
    /// The `retry:` field.
    pub retry: Option<u64>,
    /// The `data:` lines joined with `\n`; `None` when there were none.
    pub data: Option<String>,
    /// Comment lines (without the leading colon).
    pub comments: Vec<String>,
}

impl SseEvent {
    /// The data as JSON, for events carrying a message.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.data.as_deref()?).ok()
    }
}

/// Runs a future with [`READ_TIMEOUT`], panicking when it takes longer.
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(READ_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Sends one request to `url` (`http://host:port/path?query`) and reads the response head.
pub async fn request(url: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let stream = bounded("connect", TcpStream::connect(authority))
        .await
        .expect("connect to the testbed");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut reader = BufReader::new(stream);
    let writer = reader.get_mut();
    bounded("write", async {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(body).await?;
        writer.flush().await
    })
    .await
    .expect("send the request");

    let mut status_line = String::new();
    bounded("status line", reader.read_line(&mut status_line))
        .await
        .expect("read the status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut response_headers = Vec::new();
    // A head has a bounded number of lines; 200 is far more than the testbed sends.
    for _ in 0..200 {
        let mut line = String::new();
        bounded("header line", reader.read_line(&mut line))
            .await
            .expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header line");
        response_headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let framing = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked(false)
    } else if let Some(length) = find("content-length") {
        Framing::Length(length.parse().expect("a numeric Content-Length"))
    } else {
        Framing::UntilClose(false)
    };
    Reply {
        status,
        headers: response_headers,
        reader,
        framing,
        sse_buffer: String::new(),
    }
}

/// POSTs a JSON-RPC message the way a conforming client does, with extra headers.
pub async fn post(url: &str, extra: &[(&str, &str)], message: &Value) -> Reply {
    let mut headers = vec![
        ("Accept", ACCEPT_BOTH),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    request(url, "POST", &headers, message.to_string().as_bytes()).await
}

impl Reply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is an event stream.
    pub fn is_sse(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"))
    }

    /// The next piece of the body; `None` at its end.
    async fn read_piece(&mut self) -> Option<Vec<u8>> {
        match &mut self.framing {
            Framing::Length(0) | Framing::Chunked(true) | Framing::UntilClose(true) => None,
            Framing::Length(left) => {
                let mut piece = vec![0; (*left).min(64 * 1024)];
                let n = bounded("body", self.reader.read(&mut piece)).await.ok()?;
                assert!(n > 0, "connection closed inside a Content-Length body");
                *left -= n;
                piece.truncate(n);
                Some(piece)
            }
            Framing::UntilClose(done) => {
                let mut piece = vec![0; 64 * 1024];
                let n = bounded("body", self.reader.read(&mut piece))
                    .await
                    .unwrap_or(0);
                if n == 0 {
                    *done = true;
                    return None;
                }
                piece.truncate(n);
                Some(piece)
            }
            Framing::Chunked(done) => {
                let mut size_line = String::new();
                let n = bounded("chunk size", self.reader.read_line(&mut size_line))
                    .await
                    .ok()?;
                if n == 0 {
                    // The server went away without the last chunk.
                    *done = true;
                    return None;
                }
                let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
                let mut piece = vec![0; size];
                bounded("chunk", self.reader.read_exact(&mut piece))
                    .await
                    .expect("read a chunk");
                let mut crlf = String::new();
                bounded("chunk end", self.reader.read_line(&mut crlf))
                    .await
                    .expect("read a chunk's CRLF");
                if size == 0 {
                    *done = true;
                    return None;
                }
                Some(piece)
            }
        }
    }

    /// At least `n` bytes of the body as they come (all of it if it ends first), for a body
    /// that may never end.
    pub async fn body_prefix(&mut self, n: usize) -> Vec<u8> {
        let mut prefix = Vec::new();
        while prefix.len() < n {
            match self.read_piece().await {
                Some(piece) => prefix.extend_from_slice(&piece),
                None => break,
            }
        }
        prefix
    }

    /// The whole body.
    pub async fn body(mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(piece) = self.read_piece().await {
            body.extend_from_slice(&piece);
        }
        body
    }

    /// The whole body as JSON.
    pub async fn json(self) -> Value {
        let body = self.body().await;
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)))
    }

    /// The next SSE block (an event, or comments only); `None` when the stream ended.
    pub async fn next_block(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.sse_buffer.find("\n\n") {
                let block: String = self.sse_buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let piece = self.read_piece().await?;
            self.sse_buffer
                .push_str(&String::from_utf8(piece).expect("UTF-8 SSE"));
        }
    }

    /// The next SSE event that carries a JSON message, skipping comments and priming
    /// events; `None` when the stream ended first.
    pub async fn next_message(&mut self) -> Option<(SseEvent, Value)> {
        loop {
            let block = self.next_block().await?;
            if let Some(message) = block.json() {
                return Some((block, message));
            }
        }
    }

    /// Every remaining SSE block until the stream ends.
    pub async fn rest_of_stream(&mut self) -> Vec<SseEvent> {
        let mut blocks = Vec::new();
        while let Some(block) = self.next_block().await {
            blocks.push(block);
        }
        blocks
    }
}

/// Parses one SSE block (without its final blank line).
fn parse_block(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "retry" => event.retry = value.parse().ok(),
            "data" => {
                let data = event.data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    event
}
