//! Server-sent events: how events are written on the wire, the per-stream event log kept for
//! `Last-Event-ID` resumption, and the HTTP body that feeds a live connection.
//!
//! A stream's events are written into its [`EventLog`]; when a connection is attached
//! (`live`), each event is also sent to it at once. A connection that goes away leaves the
//! log behind, so a later `GET` with `Last-Event-ID` can replay what it missed
//! (MCP 2025-11-25 §Resumability and Redelivery).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{mpsc, watch};

use crate::state::until_shutdown;

/// How often an open stream gets a `: keepalive` comment. Besides proving that clients skip
/// comment lines, the write is how the server notices a client that went away.
pub(crate) const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

/// The comment line sent at the start of every stream (after the priming event, if any) and
/// then every [`KEEPALIVE_EVERY`].
pub(crate) const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// The most events a stream keeps for replay; older ones are forgotten.
const MAX_EVENTS_KEPT: usize = 4096;

/// The response body type of every answer the testbed makes.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What a stream was opened by; decides what happens after a resumption replays it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// The response stream of a POST: it ends once its responses are written.
    Post,
    /// A standalone `GET /mcp` stream for server-initiated messages.
    Get,
}

/// One SSE stream of a session, with the events it carried.
pub(crate) struct EventLog {
    /// POST response stream or GET stream.
    pub(crate) kind: StreamKind,
    /// `(sequence number, encoded event)` for every event with an id, oldest first, for
    /// replay after `Last-Event-ID`.
    events: VecDeque<(u64, Bytes)>,
    /// The sequence number the next event gets; event ids are `<stream>-<seq>`.
    next_seq: u64,
    /// The connection currently reading this stream, if any. Dropping the sender ends the
    /// HTTP body.
    pub(crate) live: Option<mpsc::UnboundedSender<Bytes>>,
    /// Set once a POST stream has written all it ever will; a resumption then replays and
    /// closes instead of waiting for more.
    pub(crate) finished: bool,
}

impl EventLog {
    /// A new stream, read by `live`.
    pub(crate) fn new(kind: StreamKind, live: mpsc::UnboundedSender<Bytes>) -> Self {
        EventLog {
            kind,
            events: VecDeque::new(),
            next_seq: 0,
            live: Some(live),
            finished: false,
        }
    }

    /// Whether a client connection is still reading this stream.
    pub(crate) fn is_live(&self) -> bool {
        self.live.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Writes an event with a fresh id: kept for replay and sent to the live connection.
    /// `data` is one line of JSON, or empty for a priming event.
    pub(crate) fn write(
        &mut self,
        stream: u64,
        event: Option<&str>,
        retry_ms: Option<u64>,
        data: &str,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = format!("{stream}-{seq}");
        let encoded = encode_event(Some(&id), event, retry_ms, data);
        if self.events.len() >= MAX_EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back((seq, encoded.clone()));
        self.send_raw(encoded);
    }

    /// Sends bytes to the live connection only (nothing is kept); drops a connection that
    /// has gone away.
    pub(crate) fn send_raw(&mut self, bytes: Bytes) {
        if let Some(tx) = &self.live {
            if tx.send(bytes).is_err() {
                self.live = None;
            }
        }
    }

    /// Sends a `: keepalive` comment, which clients must skip (SSE §Interpreting an event
    /// stream: lines starting with a colon).
    pub(crate) fn comment(&mut self) {
        self.send_raw(Bytes::from_static(KEEPALIVE));
    }

    /// The kept events that came after sequence number `after`.
    pub(crate) fn events_after(&self, after: u64) -> impl Iterator<Item = Bytes> + '_ {
        self.events
            .iter()
            .filter(move |(seq, _)| *seq > after)
            .map(|(_, bytes)| bytes.clone())
    }
}

/// Encodes one SSE event. Every line ends in `\n`; the blank line ends the event.
pub(crate) fn encode_event(
    id: Option<&str>,
    event: Option<&str>,
    retry_ms: Option<u64>,
    data: &str,
) -> Bytes {
    let mut text = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    if let Some(retry) = retry_ms {
        text.push_str(&format!("retry: {retry}\n"));
    }
    if let Some(event) = event {
        text.push_str("event: ");
        text.push_str(event);
        text.push('\n');
    }
    text.push_str("data: ");
    text.push_str(data);
    text.push_str("\n\n");
    Bytes::from(text)
}

/// Encodes a lone `retry:` field: it sets the client's reconnection delay without
/// dispatching an event.
pub(crate) fn encode_retry(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n\n"))
}

/// Splits an event id of the form `<stream>-<seq>` written by [`EventLog::write`].
pub(crate) fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (stream, seq) = id.trim().split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

/// The body of an SSE response: what arrives on `rx`, interleaved with keepalive comments
/// when `keepalives` is set. It ends when every sender of `rx` is gone or the testbed shuts
/// down.
pub(crate) fn event_stream_body(
    rx: mpsc::UnboundedReceiver<Bytes>,
    shutdown: watch::Receiver<bool>,
    keepalives: bool,
) -> Body {
    /// The state the body stream carries from one frame to the next.
    struct Feed {
        /// Encoded events (and raw fields) to write, in order.
        rx: mpsc::UnboundedReceiver<Bytes>,
        /// Flips to `true` when the testbed shuts down.
        shutdown: watch::Receiver<bool>,
        /// Paces the keepalive comments after the first, which the stream's opener sends.
        keepalive: tokio::time::Interval,
    }
    enum Next {
        Chunk(Bytes),
        Keepalive,
        End,
    }
    let first_tick = tokio::time::Instant::now() + KEEPALIVE_EVERY;
    let mut keepalive = tokio::time::interval_at(first_tick, KEEPALIVE_EVERY);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        rx,
        shutdown,
        keepalive,
    };
    let frames = futures_util::stream::unfold(feed, move |mut feed| async move {
        let next = tokio::select! {
            // Queued events before keepalives, so they go out in the order written.
            biased;
            chunk = feed.rx.recv() => chunk.map_or(Next::End, Next::Chunk),
            _ = until_shutdown(&mut feed.shutdown) => Next::End,
            _ = feed.keepalive.tick(), if keepalives => Next::Keepalive,
        };
        let bytes = match next {
            Next::Chunk(bytes) => bytes,
            Next::Keepalive => Bytes::from_static(KEEPALIVE),
            Next::End => return None,
        };
        Some((Ok::<_, Infallible>(Frame::data(bytes)), feed))
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_encoding_puts_each_field_on_its_own_line() {
        let bytes = encode_event(Some("3-1"), Some("message"), Some(200), "{\"a\":1}");
        assert_eq!(
            &bytes[..],
            b"id: 3-1\nretry: 200\nevent: message\ndata: {\"a\":1}\n\n"
        );
        let priming = encode_event(Some("3-0"), None, None, "");
        assert_eq!(&priming[..], b"id: 3-0\ndata: \n\n");
    }

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(parse_event_id("12-7"), Some((12, 7)));
        assert_eq!(parse_event_id("12"), None);
        assert_eq!(parse_event_id("x-1"), None);
    }

    #[test]
    fn replay_returns_only_later_events() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut log = EventLog::new(StreamKind::Post, tx);
        log.write(5, None, Some(100), "");
        log.write(5, Some("message"), None, "{}");
        drop(rx.try_recv());
        let replay: Vec<Bytes> = log.events_after(0).collect();
        assert_eq!(replay.len(), 1);
        assert!(replay[0].starts_with(b"id: 5-1\n"));
        drop(rx);
        log.send_raw(Bytes::from_static(b"x"));
        assert!(log.live.is_none(), "a closed connection is dropped");
    }
}
