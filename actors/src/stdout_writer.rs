//! StdoutWriter: the only writer of stdout. One compact JSON-RPC message per
//! line, flushed, in the order the messages arrived (MCP stdio transport: nothing
//! else may appear on stdout).
//!
//! Writes are asynchronous and serialized with `ctx.wait`, so the mailbox holds
//! the next messages while one is being written.

use crate::messages::{Flush, ServerFrame};
use actix::prelude::*;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The stdout actor.
pub struct StdoutWriter<W> {
    /// The output; lent to the write in progress and given back when it is done.
    output: Option<W>,
}

impl<W: AsyncWrite + Unpin + 'static> StdoutWriter<W> {
    /// A writer to `output`.
    pub fn new(output: W) -> Self {
        Self {
            output: Some(output),
        }
    }
}

impl<W: AsyncWrite + Unpin + 'static> Actor for StdoutWriter<W> {
    type Context = Context<Self>;
}

impl<W: AsyncWrite + Unpin + 'static> Handler<ServerFrame> for StdoutWriter<W> {
    type Result = ();

    fn handle(&mut self, ServerFrame(mut line): ServerFrame, ctx: &mut Context<Self>) {
        let Some(mut out) = self.output.take() else {
            return;
        };
        line.push(b'\n');
        ctx.wait(
            async move {
                let written = async {
                    out.write_all(&line).await?;
                    out.flush().await
                }
                .await;
                (out, written)
            }
            .into_actor(self)
            .map(|(out, written), act, ctx| {
                if let Err(e) = written {
                    // The host closed our stdout: nobody can hear us any more.
                    tracing::warn!("writing to stdout failed: {e}");
                    ctx.stop();
                }
                act.output = Some(out);
            }),
        );
    }
}

impl<W: AsyncWrite + Unpin + 'static> Handler<Flush> for StdoutWriter<W> {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        // Messages are handled in order and each write is awaited before the next
        // message: by the time this runs, everything before it is out.
    }
}
