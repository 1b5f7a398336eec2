//! Newline-delimited framing of the host's stdin (MCP stdio transport).
//!
//! The stdio transport delimits messages with `\n` and forbids embedded newlines
//! (MCP 2025-11-25, basic/transports §stdio). [`LineFramer`] turns arbitrary chunks
//! of bytes into whole lines, strips a trailing `\r` (CRLF hosts), skips blank
//! lines, and bounds memory: a line longer than `max_line` is never buffered, it is
//! skipped up to its newline and reported as [`Frame::Oversized`] so that the
//! caller can answer it and keep serving the lines after it.
//!
//! Driving contract: call [`LineFramer::push`] with every chunk read, then drain
//! [`LineFramer::next_frame`] until it returns `None`; at end of input call
//! [`LineFramer::finish`] and drain again.

use std::collections::VecDeque;

/// One unit handed to the JSON-RPC layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its terminator (`\n` or `\r\n`), never empty.
    Line(Vec<u8>),
    /// A line that exceeded the maximum length; `len` is its length in bytes
    /// (excluding the `\n`). Its content was discarded.
    Oversized {
        /// How long the discarded line was.
        len: usize,
    },
}

/// Incremental splitter of a byte stream into bounded lines.
#[derive(Debug)]
pub struct LineFramer {
    /// Bytes of the line being assembled (never more than `max_line` + 1 for a `\r`).
    partial: Vec<u8>,
    /// Longest line accepted, in bytes. Beyond it the line is discarded.
    max_line: usize,
    /// `Some(len)` while skipping the rest of an oversized line: how many bytes
    /// of it have gone by so far.
    discarding: Option<usize>,
    /// Frames found and not yet taken by the caller.
    ready: VecDeque<Frame>,
}

impl LineFramer {
    /// A framer accepting lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_line: max_line.max(1),
            discarding: None,
            ready: VecDeque::new(),
        }
    }

    /// The configured maximum line length.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Feed the next chunk of input.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let newline = memchr::memchr(b'\n', chunk);
            let (piece, rest, ended) = match newline {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if let Some(seen) = self.discarding.as_mut() {
                *seen += piece.len();
                if ended {
                    let len = *seen;
                    self.discarding = None;
                    self.ready.push_back(Frame::Oversized { len });
                }
                continue;
            }
            // A trailing '\r' is allowed beyond the limit: it is not part of the message.
            if self.partial.len() + piece.len() > self.max_line + 1 {
                let len = self.partial.len() + piece.len();
                self.partial.clear();
                if ended {
                    self.ready.push_back(Frame::Oversized { len });
                } else {
                    self.discarding = Some(len);
                }
                continue;
            }
            self.partial.extend_from_slice(piece);
            if ended {
                self.complete_line();
            }
        }
    }

    /// Signal end of input: a final line without a terminator becomes a frame.
    pub fn finish(&mut self) {
        if let Some(len) = self.discarding.take() {
            self.ready.push_back(Frame::Oversized { len });
        } else if !self.partial.is_empty() {
            self.complete_line();
        }
    }

    /// Take the next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    fn complete_line(&mut self) {
        let mut line = std::mem::take(&mut self.partial);
        let raw_len = line.len();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.max_line {
            self.ready.push_back(Frame::Oversized { len: raw_len });
            return;
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.ready.push_back(Frame::Line(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(x) = f.next_frame() {
                out.push(x);
            }
        }
        f.finish();
        while let Some(x) = f.next_frame() {
            out.push(x);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_lines_across_chunks_and_strips_crlf() {
        assert_eq!(
            frames(
                100,
                &[b"{\"a\":1}\r", b"\n{\"b\"", b":2}\n\n  \r\n{\"c\":3}"]
            ),
            vec![line("{\"a\":1}"), line("{\"b\":2}"), line("{\"c\":3}")]
        );
    }

    #[test]
    fn oversized_line_is_reported_and_the_next_line_survives() {
        let big = [b'x'; 50];
        let out = frames(10, &[&big[..20], &big[20..], b"\nok\n"]);
        assert_eq!(out, vec![Frame::Oversized { len: 50 }, line("ok")]);
    }

    #[test]
    fn exact_limit_is_accepted_with_or_without_cr() {
        assert_eq!(frames(3, &[b"abc\r\nabc\nabcd\n"]), {
            vec![line("abc"), line("abc"), Frame::Oversized { len: 4 }]
        });
    }

    #[test]
    fn oversized_tail_at_eof_is_reported() {
        assert_eq!(
            frames(4, &[b"ok\n123456"]),
            vec![line("ok"), Frame::Oversized { len: 6 }]
        );
    }

    proptest::proptest! {
        /// Whatever the chunking, the frames are the same, no line exceeds the limit,
        /// and every non-blank short line comes out intact.
        #[test]
        fn chunking_does_not_matter(lines in proptest::collection::vec("[a-z \\r]{0,12}", 0..12),
                                    cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let bytes = text.as_bytes();
            let whole = frames(8, &[bytes]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points { chunks.push(&bytes[last..p]); last = p; }
            chunks.push(&bytes[last..]);
            proptest::prop_assert_eq!(&frames(8, &chunks), &whole);
            let expected: Vec<Frame> = lines.iter().filter_map(|l| {
                let raw = l.len();
                let l = l.strip_suffix('\r').unwrap_or(l);
                if l.len() > 8 { Some(Frame::Oversized { len: raw }) }
                else if l.trim().is_empty() { None }
                else { Some(line(l)) }
            }).collect();
            proptest::prop_assert_eq!(whole, expected);
        }
    }
}
