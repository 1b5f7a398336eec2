//! `mcp-remote-rs`: `mcp-remote` under the name its npm and PyPI packages have, so that
//! `uvx mcp-remote-rs <url>` (which runs the program named like the package) works.

fn main() {
    mcp_remote::run::proxy()
}
