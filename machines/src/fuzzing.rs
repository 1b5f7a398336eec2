//! Entry points for the fuzz targets in `fuzz/`, kept here so that the targets
//! stay one-liners and the corpus can be replayed by ordinary tests on stable.
//! Each function must never panic, whatever the input.

use crate::framing::{Frame, LineFramer};
use crate::jsonrpc;
use crate::sse::SseParser;

/// Host stdin: framing then JSON-RPC classification of every line.
pub fn ndjson(data: &[u8]) {
    let mut framer = LineFramer::new(4096);
    for chunk in data.chunks(97) {
        framer.push(chunk);
        drain(&mut framer);
    }
    framer.finish();
    drain(&mut framer);
}

fn drain(framer: &mut LineFramer) {
    while let Some(frame) = framer.next_frame() {
        if let Frame::Line(line) = frame {
            match jsonrpc::parse_incoming(line) {
                Ok(_) => {}
                Err(e) => assert!(jsonrpc::is_json(&e.to_response())),
            }
        }
    }
}

/// Server-sent events, cut into chunks at every position given by the first byte.
pub fn sse(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let mut parser = SseParser::new(1024);
    for chunk in body.chunks(step) {
        if parser.push(chunk).is_err() {
            return;
        }
        while let Some(event) = parser.next_event() {
            let _ = jsonrpc::parse_incoming(jsonrpc::compact(event.data.into_bytes()));
        }
    }
}
