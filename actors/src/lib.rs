//! The actors of mcp-remote: thin IO shells around the machines.
//!
//! ```text
//! stdin ─► [thread] ─► StdinReader ─ClientFrames─► Session ══HTTP/SSE══► remote MCP server
//! stdout ◄─ [thread] ◄─ HostOutput ◄─────────────── Session
//! ```
//!
//! Each actor turns IO into machine events and performs the effects the
//! machine returns; decisions live in the `machines` crate. All messages are in
//! [`messages`]; actors hold `Recipient`s, so a test can stand in for any peer.

pub mod allocator;
pub mod authorizer;
pub mod browser;
pub mod callback_listener;
pub mod cookies;
pub mod http;
pub mod jwt;
pub mod messages;
pub mod oauth;
pub mod session;
pub mod stdin_reader;
pub mod stdout_writer;
pub mod store;
pub mod token_store;
pub mod trace;
