//! `mcp-remote`: the stdio MCP server that bridges to a remote MCP server.

fn main() {
    mcp_remote::run::proxy()
}
