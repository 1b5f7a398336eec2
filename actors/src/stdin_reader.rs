//! StdinReader: reads the host's stdin from the first instant, frames it into
//! bounded lines, parses each line once and hands it to the Session.
//!
//! Backpressure: each frame is sent with `send().await`, which waits while the
//! Session's mailbox is full, so stdin is not read faster than the proxy can
//! route (memory stays bounded). An oversized line is reported and skipped,
//! the lines after it are served (the framer never ends the stream on it).
//! End of file is announced with `HostClosed`.
//!
//! The process's stdin is read by a plain thread ([`spawn_stdin_thread`]), not
//! by tokio's blocking pool: a runtime waits for its blocking tasks when it
//! shuts down, and a read on a pipe the host keeps open never ends, so a
//! SIGTERM would never end the process.

use crate::messages::{ClientFrame, HostClosed};
use actix::prelude::*;
use machines::framing::{Frame, LineFramer};
use machines::jsonrpc;
use std::io::Read;
use tokio::sync::mpsc;

/// Chunks of input; `None` (the channel closing) is end of file.
pub type Chunks = mpsc::Receiver<Vec<u8>>;

/// Read this process's stdin on a detached thread, chunk by chunk. The thread
/// blocks when the channel is full (backpressure) and ends at end of file.
pub fn spawn_stdin_thread() -> Chunks {
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("mcp-remote-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!("reading stdin failed: {e}; treating it as closed");
                        break;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stdin reader: {e}");
    }
    rx
}

/// The stdin actor. It owns nothing but the task that reads.
pub struct StdinReader {
    /// The input, taken by the reading task when the actor starts.
    input: Option<Chunks>,
    /// Where frames go.
    session: Recipient<ClientFrame>,
    /// Who hears about end of file.
    closed: Recipient<HostClosed>,
    /// Longest accepted line, in bytes.
    max_line: usize,
}

impl StdinReader {
    /// A reader of `input` feeding `session`.
    pub fn new(
        input: Chunks,
        session: Recipient<ClientFrame>,
        closed: Recipient<HostClosed>,
        max_line: usize,
    ) -> Self {
        Self {
            input: Some(input),
            session,
            closed,
            max_line,
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
        let max_line = self.max_line;
        ctx.spawn(read_loop(input, session, closed, max_line).into_actor(self));
    }
}

async fn read_loop(
    mut input: Chunks,
    session: Recipient<ClientFrame>,
    closed: Recipient<HostClosed>,
    max_line: usize,
) {
    let mut framer = LineFramer::new(max_line);
    while let Some(chunk) = input.recv().await {
        framer.push(&chunk);
        if !deliver(&mut framer, &session).await {
            return;
        }
    }
    framer.finish();
    deliver(&mut framer, &session).await;
    tracing::debug!("stdin closed");
    let _ = closed.send(HostClosed).await;
}

/// Send every complete frame; false when the Session is gone.
async fn deliver(framer: &mut LineFramer, session: &Recipient<ClientFrame>) -> bool {
    while let Some(frame) = framer.next_frame() {
        let message = match frame {
            Frame::Line(line) => match jsonrpc::parse_incoming(line) {
                Ok(incoming) => ClientFrame::Incoming(incoming),
                Err(malformed) => ClientFrame::Garbage(malformed),
            },
            Frame::Oversized { len } => ClientFrame::Oversized {
                len,
                max: framer.max_line(),
            },
        };
        if session.send(message).await.is_err() {
            return false;
        }
    }
    true
}
