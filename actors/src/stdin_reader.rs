//! StdinReader: reads the host's stdin from the first instant, frames it into
//! bounded lines, parses each line once and hands it to the Bridge.
//!
//! Backpressure: each frame is sent with `send().await`, which waits while the
//! Bridge's mailbox is full, so stdin is not read faster than the proxy can
//! route (memory stays bounded). An oversized line is reported and skipped,
//! the lines after it are served (the framer never ends the stream on it).
//! End of file is announced with `HostClosed`.

use crate::messages::{ClientFrame, HostClosed};
use actix::prelude::*;
use machines::framing::{Frame, LineFramer};
use machines::jsonrpc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The stdin actor. It owns nothing but the task that reads.
pub struct StdinReader<R> {
    /// The input, taken by the reading task when the actor starts.
    input: Option<R>,
    /// Where frames go.
    bridge: Recipient<ClientFrame>,
    /// Who hears about end of file.
    closed: Recipient<HostClosed>,
    /// Longest accepted line, in bytes.
    max_line: usize,
}

impl<R: AsyncRead + Unpin + 'static> StdinReader<R> {
    /// A reader of `input` feeding `bridge`.
    pub fn new(
        input: R,
        bridge: Recipient<ClientFrame>,
        closed: Recipient<HostClosed>,
        max_line: usize,
    ) -> Self {
        Self {
            input: Some(input),
            bridge,
            closed,
            max_line,
        }
    }
}

impl<R: AsyncRead + Unpin + 'static> Actor for StdinReader<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(input) = self.input.take() else {
            return;
        };
        let bridge = self.bridge.clone();
        let closed = self.closed.clone();
        let max_line = self.max_line;
        ctx.spawn(read_loop(input, bridge, closed, max_line).into_actor(self));
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut input: R,
    bridge: Recipient<ClientFrame>,
    closed: Recipient<HostClosed>,
    max_line: usize,
) {
    let mut framer = LineFramer::new(max_line);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading stdin failed: {e}; treating it as closed");
                break;
            }
        };
        framer.push(&buf[..n]);
        if !deliver(&mut framer, &bridge).await {
            return;
        }
    }
    framer.finish();
    deliver(&mut framer, &bridge).await;
    tracing::debug!("stdin closed");
    let _ = closed.send(HostClosed).await;
}

/// Send every complete frame; false when the Bridge is gone.
async fn deliver(framer: &mut LineFramer, bridge: &Recipient<ClientFrame>) -> bool {
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
        if bridge.send(message).await.is_err() {
            return false;
        }
    }
    true
}
