//! Logging: stderr only (stdout is the protocol), plus `<key>_debug.log` in the
//! config folder with `--debug`.
//!
//! Invariant 8: many MCP hosts never read the server's stderr; once that pipe is
//! full a blocking write would freeze the proxy. Both sinks are non-blocking
//! with a bounded queue: when they cannot keep up, lines are dropped (and
//! counted), never waited for. Nothing logged carries a body, a header value,
//! a session id or a token: the call sites log directions, methods and ids.

use crate::settings::Settings;
use std::fs::OpenOptions;
use std::io::Write;
use tracing::level_filters::LevelFilter;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Lines buffered per sink before new lines are dropped.
const BUFFERED_LINES: usize = 4096;

/// Keeps the log writers alive; dropping it flushes them.
pub struct LogGuard {
    /// The writer threads' guards.
    _guards: Vec<WorkerGuard>,
    /// Dropped-line counters, reported at exit.
    dropped: Vec<ErrorCounter>,
}

impl LogGuard {
    /// How many lines were dropped because a sink could not keep up.
    pub fn dropped(&self) -> usize {
        self.dropped.iter().map(ErrorCounter::dropped_lines).sum()
    }
}

/// Install the subscriber.
pub fn init(settings: &Settings) -> LogGuard {
    let level = if settings.debug {
        LevelFilter::DEBUG
    } else if settings.silent {
        LevelFilter::ERROR
    } else {
        LevelFilter::INFO
    };
    let mut guards = Vec::new();
    let mut dropped = Vec::new();
    let (stderr, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("mcp-remote-log")
        .finish(std::io::stderr());
    dropped.push(stderr.error_counter());
    guards.push(guard);
    let stderr_layer = fmt::layer()
        .with_writer(stderr)
        .with_ansi(false)
        .with_target(false)
        .with_filter(ours(level));

    let file_layer = if settings.debug {
        match open_debug_log(settings) {
            Ok(file) => {
                let (writer, guard) = NonBlockingBuilder::default()
                    .lossy(true)
                    .buffered_lines_limit(BUFFERED_LINES)
                    .thread_name("mcp-remote-debug-log")
                    .finish(file);
                dropped.push(writer.error_counter());
                guards.push(guard);
                Some(
                    fmt::layer()
                        .with_writer(writer)
                        .with_ansi(false)
                        .with_filter(ours(LevelFilter::DEBUG)),
                )
            }
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "mcp-remote: cannot open the debug log: {e}"
                );
                None
            }
        }
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .init();
    LogGuard {
        _guards: guards,
        dropped,
    }
}

/// Our crates at `level`; other crates (HTTP, TLS) only at warnings, so their
/// debug output (URLs, connection details) never reaches the logs.
fn ours(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN.min(level))
        .with_target("mcp_remote", level)
        .with_target("mcp_remote_client", level)
        .with_target("actors", level)
        .with_target("machines", level)
}

/// `<config dir>/<key>_debug.log`, the folder 0700 and the file 0600.
fn open_debug_log(settings: &Settings) -> std::io::Result<std::fs::File> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        dir.mode(0o700);
    }
    dir.create(&settings.config_dir)?;
    let path = settings
        .config_dir
        .join(format!("{}_debug.log", settings.key));
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
