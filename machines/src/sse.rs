//! Incremental parser for `text/event-stream` (WHATWG HTML §9.2 "Server-sent events").
//!
//! Both Streamable HTTP (a POST answered with SSE, the optional GET stream) and
//! the legacy HTTP+SSE transport carry JSON-RPC messages as SSE events. The
//! parser is fed raw body chunks and yields whole events; it tracks the last
//! event id and the server's `retry:` hint, which resumption needs (MCP
//! 2025-11-25, transports §Resumability and Redelivery). Memory is bounded: an
//! event larger than `max_event` bytes is an error and the stream must be
//! dropped.
//!
//! Driving contract: [`SseParser::push`] each chunk, then drain
//! [`SseParser::next_event`]; read [`SseParser::last_event_id`] and
//! [`SseParser::retry`] whenever needed.

use std::collections::VecDeque;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` type; `None` means the default type `message`.
    pub event: Option<String>,
    /// The data lines joined with `\n`.
    pub data: String,
    /// The last event id in force when this event was dispatched.
    pub id: Option<String>,
}

/// The stream broke a rule the parser cannot recover from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// One event (or one line) grew beyond the configured bound.
    #[error("server-sent event larger than {max} bytes")]
    TooLarge {
        /// The bound that was exceeded.
        max: usize,
    },
    /// An event's data is not UTF-8.
    #[error("server-sent event is not valid UTF-8")]
    NotUtf8,
}

/// The UTF-8 byte order mark.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Streaming SSE parser.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    /// Whether the UTF-8 byte order mark at the very start was dealt with.
    started: bool,
    /// How many bytes of a byte order mark the stream began with so far: a network
    /// may split even those three bytes across chunks.
    bom_matched: usize,
    /// `data` buffer of the event being assembled.
    data: Vec<u8>,
    /// Whether any `data:` field was seen for the current event (an empty `data:` counts).
    has_data: bool,
    /// `event:` of the event being assembled.
    event: Option<String>,
    /// The last event id buffer (spec: persists across events).
    last_event_id: Option<String>,
    /// The latest `retry:` value in milliseconds.
    retry: Option<u64>,
    /// Bound on one event's size, in bytes.
    max_event: usize,
    /// Parsed events not yet taken.
    ready: VecDeque<SseEvent>,
    /// Set once a bound was exceeded; the parser then refuses more input.
    failed: Option<SseError>,
    /// Comment lines seen (servers send them as keep-alives).
    comments: u64,
}

impl SseParser {
    /// A parser that refuses events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            started: false,
            bom_matched: 0,
            data: Vec::new(),
            has_data: false,
            event: None,
            last_event_id: None,
            retry: None,
            max_event,
            ready: VecDeque::new(),
            failed: None,
            comments: 0,
        }
    }

    /// A parser that resumes a stream whose last event id is known.
    pub fn resuming(max_event: usize, last_event_id: Option<String>) -> Self {
        let mut p = Self::new(max_event);
        p.last_event_id = last_event_id;
        p
    }

    /// Feed a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut rest = chunk;
        while !self.started {
            let Some((&b, after)) = rest.split_first() else {
                return Ok(());
            };
            rest = after;
            // WHATWG §9.2.6: one leading BOM is ignored, wherever the chunks split it.
            if b == BOM[self.bom_matched] {
                self.bom_matched += 1;
                self.started = self.bom_matched == BOM.len();
                continue;
            }
            self.started = true;
            for &kept in &BOM[..self.bom_matched] {
                self.byte(kept)?;
            }
            self.byte(b)?;
        }
        // Whole runs between line ends at a time: a long `data:` line costs one copy.
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', rest) {
                Some(i) => {
                    self.extend_line(&rest[..i])?;
                    self.after_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    self.end_line()?;
                }
                None => {
                    self.extend_line(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// Bytes of the current line (no line end among them).
    fn extend_line(&mut self, run: &[u8]) -> Result<(), SseError> {
        if self.line.len() + run.len() + self.data.len() > self.max_event {
            return self.fail();
        }
        self.line.extend_from_slice(run);
        Ok(())
    }

    /// One byte of the stream, after the byte order mark.
    fn byte(&mut self, b: u8) -> Result<(), SseError> {
        if self.after_cr {
            self.after_cr = false;
            if b == b'\n' {
                return Ok(());
            }
        }
        match b {
            b'\n' => self.end_line(),
            b'\r' => {
                self.after_cr = true;
                self.end_line()
            }
            _ => self.extend_line(&[b]),
        }
    }

    /// Take the next dispatched event.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// The last event id seen (set by `id:` fields, including on events without data).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The latest reconnection time the server asked for, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Memory held for the event being assembled (its line and data so far).
    pub fn buffered(&self) -> usize {
        self.line.capacity() + self.data.capacity()
    }

    /// How many comment lines (keep-alives) were seen so far.
    pub fn comments(&self) -> u64 {
        self.comments
    }

    fn fail(&mut self) -> Result<(), SseError> {
        let e = SseError::TooLarge {
            max: self.max_event,
        };
        self.failed = Some(e.clone());
        self.line.clear();
        self.data.clear();
        Err(e)
    }

    fn end_line(&mut self) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            self.comments += 1; // comment (keep-alive)
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &[][..]),
        };
        match field {
            b"data" if !self.has_data && self.data.is_empty() => {
                // The event's first data line becomes its data in place (no second copy).
                let start = line.len() - value.len();
                self.has_data = true;
                self.data = line;
                self.data.drain(..start);
            }
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.has_data = true;
                self.data.extend_from_slice(value);
                if self.data.len() > self.max_event {
                    return self.fail();
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // An id with NUL is ignored (WHATWG: "If the field value does not contain U+0000").
            b"id" if !value.contains(&0) => {
                self.last_event_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<(), SseError> {
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return Ok(());
        }
        self.has_data = false;
        let data =
            String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::NotUtf8)?;
        self.ready.push_back(SseEvent {
            event,
            data,
            id: self.last_event_id.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c).unwrap();
            while let Some(e) = p.next_event() {
                out.push(e);
            }
        }
        (out, p)
    }

    #[test]
    fn a_byte_order_mark_split_across_chunks_is_ignored_too() {
        let (split, _) = parse_all(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        let (whole, _) = parse_all(&[b"\xEF\xBB\xBFdata: a\n\n"]);
        assert_eq!(split, whole);
        assert_eq!(split[0].data, "a");
        // Not a whole mark: its bytes are the stream's.
        let (kept, _) = parse_all(&[b"\xEF", b"\xBBdata: z\n\ndata: w\n\n"]);
        assert_eq!(kept.len(), 1, "`\\xEF\\xBBdata` is not `data`: {kept:?}");
        assert_eq!(kept[0].data, "w");
    }

    #[test]
    fn parses_events_ids_retry_and_comments() {
        let (evs, p) = parse_all(&[
            b"\xEF\xBB\xBFid: 1-0\nretry: 500\ndata:\n\n",
            b": keepalive\n\nevent: message\nid: 1-1\ndata: {\"a\":1}\n\n",
            b"data: x\r\ndata: y\r\r",
        ]);
        assert_eq!(p.retry(), Some(500));
        assert_eq!(p.last_event_id(), Some("1-1"));
        assert_eq!(evs.len(), 3, "{evs:?}");
        assert_eq!(evs[0].data, "");
        assert_eq!(
            evs[1],
            SseEvent {
                event: Some("message".into()),
                data: "{\"a\":1}".into(),
                id: Some("1-1".into())
            }
        );
        assert_eq!(evs[2].data, "x\ny");
    }

    #[test]
    fn priming_event_without_data_field_only_sets_the_id() {
        let (evs, p) = parse_all(&[b"id: 9\nretry: 20\n\n"]);
        assert!(evs.is_empty());
        assert_eq!(p.last_event_id(), Some("9"));
    }

    #[test]
    fn crlf_split_across_chunks() {
        let (evs, _) = parse_all(&[b"data: a\r", b"\n\r", b"\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "a");
    }

    #[test]
    fn oversized_event_fails_and_stays_failed() {
        let mut p = SseParser::new(8);
        assert!(p.push(b"data: 0123456789\n").is_err());
        assert!(p.push(b"\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn chunk_boundaries_do_not_change_events(datas in proptest::collection::vec("[a-z{}\":]{0,10}", 1..6), cut in 0usize..100) {
            let text: String = datas.iter().enumerate().map(|(i, d)| format!("id: {i}\r\ndata: {d}\r\n\r\n")).collect();
            let b = text.as_bytes();
            let cut = cut % (b.len() + 1);
            let (whole, _) = parse_all(&[b]);
            let (split, p) = parse_all(&[&b[..cut], &b[cut..]]);
            proptest::prop_assert_eq!(&whole, &split);
            proptest::prop_assert_eq!(whole.len(), datas.len());
            let last = (datas.len() - 1).to_string();
            proptest::prop_assert_eq!(p.last_event_id(), Some(last.as_str()));
        }
    }
}
