//! The pure parts of MCP authorization (MCP 2025-06-18 / 2025-11-25
//! basic/authorization): reading challenges, where to look for metadata, what
//! to trust in it, and which scopes to ask for.

pub mod callback_port;
pub mod challenge;
pub mod discovery;
pub mod grant;
pub mod scope;
