//! The sans-IO core of mcp-remote.
//!
//! Everything here is pure: no sockets, no clock, no files, no randomness. Time
//! comes in with events (`now`), seeds are passed in, and decisions come out as
//! effects that the actors in the `actors` crate perform. The same inputs always
//! give the same outputs, so the machines can be driven through generated
//! schedules (proptest, fuzzing) without a network.
//!
//! - [`framing`]: newline-delimited stdin framing with a bounded line length.
//! - [`jsonrpc`]: JSON-RPC envelopes read without re-serializing, errors, filters.
//! - [`sse`]: the `text/event-stream` parser.
//! - [`engine`]: the connection engine: the whole client side of the proxy, sans IO,
//!   from the host's line to the server's answer (one table of messages).
//! - [`error`]: why a host request gets an error from the proxy, by who is at fault.
//! - [`link`]: the session machine (initialize, session expiry, shutdown).
//! - [`stream`]: the reconnect/resume machine of an SSE stream.
//! - [`transport`]: what Streamable HTTP answers mean.
//! - [`modern`]: the MCP 2026-07-28 wire (discovery, `_meta`, request headers).
//! - [`backoff`]: seeded jittered exponential delays (backon).
//! - [`cache_key`]: mcp-remote's per-server key for the config folder.
//!
//! Driving contract (as in str0m and quinn-proto): after every input, drain all
//! the effects it produced, in order, before the next input.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod backoff;
pub mod cache_key;
pub mod engine;
pub mod error;
pub mod framing;
pub mod fuzzing;
pub mod jsonrpc;
pub mod link;
pub mod modern;
pub mod pacing;
pub mod sse;
pub mod stream;
pub mod trace;
pub mod transport;
