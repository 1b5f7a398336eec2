//! The proxy's `main`, shared by the `mcp-remote` program and its `mcp-remote-rs`
//! alias (the name the npm and PyPI packages are found by: `uvx mcp-remote-rs <url>`
//! runs the program of that name).

use crate::cli::Cli;
use crate::settings::Settings;
use crate::{logging, wiring};
use clap::Parser;

/// Parse the command line, run the bridge until stdin closes or a signal, exit.
pub fn proxy() -> ! {
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
