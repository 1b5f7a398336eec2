//! `mcp-remote`: the stdio MCP server that bridges to a remote MCP server.

use clap::Parser;
use mcp_remote::cli::Cli;
use mcp_remote::settings::Settings;
use mcp_remote::{logging, wiring};

fn main() {
    actors::allocator::tune();
    let cli = Cli::parse();
    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcp-remote: {e}");
            std::process::exit(1);
        }
    };
    let guard = logging::start("mcp-remote", &settings);
    tracing::info!(
        "mcp-remote-rs {} bridging stdio to {}",
        env!("CARGO_PKG_VERSION"),
        redacted_url(&settings.url)
    );
    let system = actix::System::new();
    let started =
        system.block_on(async { wiring::start_proxy(&settings, wiring::seed()).map(|_| ()) });
    let code = match started {
        Ok(()) => system.run_with_code().unwrap_or(1),
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    };
    // Reports dropped log lines through the log sinks and waits a bounded time for them:
    // never a direct write to stderr here, which would wait behind a full pipe for ever.
    drop(guard);
    // Exit at once: the blocking stdin reader thread may still wait on an open pipe.
    std::process::exit(code);
}

/// The server URL without credentials or query (they may carry secrets).
fn redacted_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}
