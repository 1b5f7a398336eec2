//! StdinReader: reads the host's stdin from the first instant, frames it into
//! bounded lines, parses each line once and hands them to the Session.
//!
//! The process's stdin is read by a plain thread ([`spawn_stdin_thread`]), not by
//! tokio's blocking pool: a runtime waits for its blocking tasks when it shuts
//! down, and a read on a pipe the host keeps open never ends, so a SIGTERM would
//! never end the process. That thread also frames and parses what it read, off
//! the Session's thread, and passes on every message of one read as one batch:
//! a host that pipelines costs the Session one wake-up per read, not per message.
//!
//! Backpressure: the thread blocks while the channel holds [`QUEUED_BATCHES`]
//! batches, and the actor sends each batch with `send().await`, which waits for
//! the Session to have handled it, so stdin is not read faster than the proxy can
//! route (memory stays bounded). An oversized line is reported and skipped, the
//! lines after it are served (the framer never ends the stream on it). End of
//! file is announced with `HostClosed`.

use crate::messages::{ClientFrame, ClientFrames, HostClosed};
use actix::prelude::*;
use machines::framing::{Frame, LineFramer};
use machines::jsonrpc;
use std::io::Read;
use tokio::sync::mpsc;

/// Batches read ahead of the Session.
pub const QUEUED_BATCHES: usize = 4;

/// Batches of parsed frames; `None` (the channel closing) is end of file.
pub type Batches = mpsc::Receiver<Vec<ClientFrame>>;

/// Where the StdinReader gets the host's messages.
pub enum Input {
    /// Batches from the stdin thread ([`spawn_stdin_thread`]).
    Thread(Batches),
    /// stdin itself, a pipe read without blocking on the Session's runtime
    /// ([`open_stdin_pipe`]): no thread hand-off per message; lines of at most
    /// the given length.
    #[cfg(target_os = "linux")]
    Pipe(tokio::net::unix::pipe::Receiver, usize),
}

/// The host's stdin, read without a thread: Linux, when stdin is a pipe (as every MCP
/// host makes it). It is opened again through `/proc/self/fd/0`, which gives a file
/// description of this process's own, so making it non-blocking changes nothing for
/// anyone else holding the pipe. Anything else (a terminal, a file, no `/proc`) gets
/// the thread.
pub fn stdin_input(max_line: usize) -> Input {
    #[cfg(target_os = "linux")]
    if let Some(pipe) = open_stdin_pipe() {
        crate::stdout_writer::widen_pipe(0);
        return Input::Pipe(pipe, max_line);
    }
    Input::Thread(spawn_stdin_thread(max_line))
}

#[cfg(target_os = "linux")]
fn open_stdin_pipe() -> Option<tokio::net::unix::pipe::Receiver> {
    use std::os::unix::fs::OpenOptionsExt;
    let own = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/proc/self/fd/0")
        .ok()?;
    // Refuses anything but a pipe open for reading.
    tokio::net::unix::pipe::Receiver::from_file(own).ok()
}

/// Read this process's stdin on a detached thread, frame and parse each line
/// (at most `max_line` bytes), and pass on each read's messages as one batch.
/// The thread blocks when the channel is full (backpressure) and ends at end of
/// file.
pub fn spawn_stdin_thread(max_line: usize) -> Batches {
    let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
    let spawned = std::thread::Builder::new()
        .name("mcp-remote-stdin".into())
        .spawn(move || {
            crate::stdout_writer::widen_pipe(0);
            read_frames(std::io::stdin().lock(), max_line, &tx)
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stdin reader: {e}");
    }
    rx
}

/// Reads `input` to its end, sending each read's frames as one batch.
fn read_frames(mut input: impl Read, max_line: usize, tx: &mpsc::Sender<Vec<ClientFrame>>) {
    let mut reading = Reading::new(max_line);
    loop {
        let read = input.read(reading.buffer());
        match reading.after(read) {
            Step::Again => {}
            Step::Batch(batch) => {
                if tx.blocking_send(batch).is_err() {
                    return;
                }
            }
            Step::End(last) => {
                if !last.is_empty() {
                    let _ = tx.blocking_send(last);
                }
                return;
            }
        }
    }
}

/// What a read of stdin gave: the same for the thread and the event loop.
enum Step {
    /// Nothing to pass on yet (no complete line, or an interrupted read).
    Again,
    /// Every message the read completed.
    Batch(Vec<ClientFrame>),
    /// End of file (or a failed read, taken as one): the last messages, if any.
    End(Vec<ClientFrame>),
}

/// The framer and the read buffer of one stdin.
struct Reading {
    framer: LineFramer,
    buf: Vec<u8>,
}

impl Reading {
    fn new(max_line: usize) -> Self {
        Self {
            framer: LineFramer::new(max_line),
            buf: vec![0u8; 256 * 1024],
        }
    }

    /// Where the next read goes.
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// What the read that filled [`Reading::buffer`] gave.
    fn after(&mut self, read: std::io::Result<usize>) -> Step {
        match read {
            Ok(0) => {}
            Ok(n) => {
                self.framer.push(&self.buf[..n]);
                let batch = frames(&mut self.framer);
                return match batch.is_empty() {
                    true => Step::Again,
                    false => Step::Batch(batch),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Step::Again,
            Err(e) => tracing::warn!("reading stdin failed: {e}; treating it as closed"),
        }
        self.framer.finish();
        Step::End(frames(&mut self.framer))
    }
}

/// Every complete frame the framer holds, parsed.
fn frames(framer: &mut LineFramer) -> Vec<ClientFrame> {
    let mut batch = Vec::new();
    while let Some(frame) = framer.next_frame() {
        batch.push(match frame {
            Frame::Line(line) => match jsonrpc::parse_incoming(line) {
                Ok(incoming) => ClientFrame::Incoming(incoming),
                Err(malformed) => ClientFrame::Garbage(malformed),
            },
            Frame::Oversized { len } => ClientFrame::Oversized {
                len,
                max: framer.max_line(),
            },
        });
    }
    batch
}

/// The stdin actor. It owns nothing but the task that hands batches on.
pub struct StdinReader {
    /// The input, taken by the reading task when the actor starts.
    input: Option<Input>,
    /// Where frames go.
    session: Recipient<ClientFrames>,
    /// Who hears about end of file.
    closed: Recipient<HostClosed>,
}

impl StdinReader {
    /// A reader of `input` feeding `session`.
    pub fn new(
        input: Input,
        session: Recipient<ClientFrames>,
        closed: Recipient<HostClosed>,
    ) -> Self {
        Self {
            input: Some(input),
            session,
            closed,
        }
    }
}

impl Actor for StdinReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(input) = self.input.take() else {
            return;
        };
        let session = self.session.clone();
        let closed = self.closed.clone();
        ctx.spawn(
            async move {
                let open = match input {
                    Input::Thread(mut batches) => {
                        let mut open = true;
                        while let Some(batch) = batches.recv().await {
                            if session.send(ClientFrames(batch)).await.is_err() {
                                open = false;
                                break;
                            }
                        }
                        open
                    }
                    #[cfg(target_os = "linux")]
                    Input::Pipe(pipe, max_line) => read_pipe(pipe, max_line, &session).await,
                };
                if open {
                    tracing::debug!("stdin closed");
                    let _ = closed.send(HostClosed).await;
                }
            }
            .into_actor(self),
        );
    }
}

/// Reads the pipe to its end on this runtime; false when the Session is gone.
#[cfg(target_os = "linux")]
async fn read_pipe(
    mut pipe: tokio::net::unix::pipe::Receiver,
    max_line: usize,
    session: &Recipient<ClientFrames>,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut reading = Reading::new(max_line);
    loop {
        let read = pipe.read(reading.buffer()).await;
        match reading.after(read) {
            Step::Again => {}
            Step::Batch(batch) => {
                if session.send(ClientFrames(batch)).await.is_err() {
                    return false;
                }
            }
            Step::End(last) => {
                return last.is_empty() || session.send(ClientFrames(last)).await.is_ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max_line: usize) -> Vec<Vec<ClientFrame>> {
        let (tx, mut rx) = mpsc::channel(1024);
        read_frames(input, max_line, &tx);
        drop(tx);
        let mut batches = Vec::new();
        while let Ok(b) = rx.try_recv() {
            batches.push(b);
        }
        batches
    }

    #[test]
    fn one_read_is_one_batch_in_order_with_garbage_and_oversized_lines_reported() {
        let long = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{}\"}}", "x".repeat(200));
        let input = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}\nnot json\n{long}\n{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}}\n{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}}"
        );
        let batches = read_all(input.as_bytes(), 100);
        // A slice is read whole: one batch, then the unterminated last line at the end.
        assert_eq!(batches.len(), 2, "{batches:?}");
        let kinds: Vec<String> = batches
            .iter()
            .flatten()
            .map(|f| match f {
                ClientFrame::Incoming(jsonrpc::Incoming::Single(m)) => {
                    format!(
                        "id {}",
                        m.id_key.as_ref().map(|i| i.to_string()).unwrap_or_default()
                    )
                }
                ClientFrame::Incoming(_) => "batch".into(),
                ClientFrame::Garbage(_) => "garbage".into(),
                ClientFrame::Oversized { len, max } => format!("oversized {len}>{max}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "id 1",
                "garbage",
                &format!("oversized {}>100", long.len()),
                "id 2",
                "id 3"
            ]
        );
    }
}
