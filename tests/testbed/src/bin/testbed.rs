//! `mcp-testbed`: runs the loopback MCP testbed as a process, for the README demo and for
//! trying `mcp-remote` by hand.
//!
//! It prints a banner on stderr and the endpoint URL alone on stdout (one line, flushed, so
//! a script can read it), then serves until SIGINT, SIGTERM, or the end of its stdin, the
//! way a stdio child is told to stop. The URL is the Streamable HTTP one (`/mcp`), or with
//! `--legacy` the legacy HTTP+SSE one (`/sse`); `--both` serves both and prints `/mcp`.
//! `--auth` protects the endpoints with OAuth and serves the authorization server too.
//!
//! ```text
//! mcp-testbed [--port N] [--json] [--legacy | --both] [--auth] [--ignore-stdin]
//! ```

use std::process::ExitCode;

use testbed::{AuthConfig, Config, ResponseMode, Testbed, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the command line asked for.
struct Options {
    /// The port to bind on 127.0.0.1; 0 picks a free one.
    port: u16,
    /// Answer requests with `application/json` instead of SSE.
    json: bool,
    /// The transports to serve: `--legacy` for HTTP+SSE only, `--both` for both.
    transport: Transport,
    /// Require OAuth bearer tokens and serve the authorization server, with the defaults.
    auth: bool,
    /// Keep running when stdin ends, for a testbed started in the background of a shell,
    /// whose stdin is often `/dev/null`.
    ignore_stdin: bool,
}

const USAGE: &str =
    "usage: mcp-testbed [--port N] [--json] [--legacy | --both] [--auth] [--ignore-stdin]";

/// Parses the arguments after the program name.
fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        port: 0,
        json: false,
        transport: Transport::Streamable,
        auth: false,
        ignore_stdin: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a number")?;
                options.port = value
                    .parse()
                    .map_err(|_| format!("--port: not a port number: {value}"))?;
            }
            "--json" => options.json = true,
            "--legacy" => options.transport = Transport::Legacy,
            "--both" => options.transport = Transport::Both,
            "--auth" => options.auth = true,
            "--ignore-stdin" => options.ignore_stdin = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// Waits for SIGTERM; never resolves where there is no such signal.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut sigterm) = signal(SignalKind::terminate()) {
            sigterm.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Waits for stdin to reach its end (or fail), discarding what it reads.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 1024];
    // Ends at EOF or on a read error; each read blocks until input arrives.
    while let Ok(n) = stdin.read(&mut buffer).await {
        if n == 0 {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    if options.json {
        config.response_mode = ResponseMode::Json;
    }
    config.transport = options.transport;
    if options.auth {
        config.auth = Some(AuthConfig::default());
    }
    let testbed = match Testbed::start_on_port(config, options.port).await {
        Ok(testbed) => testbed,
        Err(error) => {
            eprintln!(
                "mcp-testbed: cannot listen on 127.0.0.1:{}: {error}",
                options.port
            );
            return ExitCode::FAILURE;
        }
    };
    let url = match options.transport {
        Transport::Legacy => testbed.sse_url(),
        Transport::Streamable | Transport::Both => testbed.url(),
    };
    eprintln!("MCP testbed listening on {url}");
    if options.transport == Transport::Both {
        eprintln!("legacy HTTP+SSE endpoint on {}", testbed.sse_url());
    }
    if options.auth {
        eprintln!("OAuth authorization server at {}", testbed.issuer());
    }
    let mut stdout = tokio::io::stdout();
    let announced = async {
        stdout.write_all(format!("{url}\n").as_bytes()).await?;
        stdout.flush().await
    };
    if announced.await.is_err() {
        eprintln!("mcp-testbed: cannot write to stdout");
    }

    let stdin_ends = async {
        if options.ignore_stdin {
            std::future::pending::<()>().await;
        }
        stdin_closed().await;
    };
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminated() => "SIGTERM",
        _ = stdin_ends => "end of stdin",
    };
    eprintln!("MCP testbed stopping ({reason})");
    testbed.shutdown();
    ExitCode::SUCCESS
}
