//! Logging: stderr only (stdout is the protocol), plus `<key>_debug.log` in the
//! config folder with `--debug`.
//!
//! Invariant 8: many MCP hosts never read the server's stderr; once that pipe is
//! full a blocking write would freeze the proxy. Each sink is a bounded queue of
//! whole lines drained by its own thread: the message path only ever tries to
//! enqueue, and when the queue is full the line is dropped and counted, never
//! waited for. Invariant 7 holds whatever stderr does: at exit the sinks get a
//! bounded time to drain ([`LogGuard`]'s drop), then the process goes, leaving a
//! writer thread stuck on a full pipe behind.
//!
//! Why not `tracing-appender`'s non-blocking writer: its guard, dropped at exit,
//! waits for its worker (up to 1.1 s per sink, however long the exit may take) and,
//! when its queue is full — exactly when stderr is not read — prints a complaint
//! with `println!`, on stdout, which carries only JSON-RPC.
//!
//! Nothing logged carries a body, a header value, a session id or a token: the
//! call sites log directions, methods and ids.

use crate::settings::Settings;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Lines buffered per sink before new lines are dropped.
const BUFFERED_LINES: usize = 4096;

/// How long the exit waits, at most, for the sinks to write what they hold: the
/// debug log file then holds every line, and a host that reads stderr sees the last
/// ones, while a stderr nobody reads costs the exit no more than this (invariant 7:
/// exit within a second or two of stdin's end).
const DRAIN_AT_EXIT: Duration = Duration::from_millis(300);

/// How often the exit looks whether the sinks are drained.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// One log destination: whole lines go into a bounded queue, and a thread of its own
/// writes them, so only that thread ever blocks on the destination.
#[derive(Clone)]
struct Sink {
    /// The writer thread's queue; `try_send` only.
    queue: SyncSender<Vec<u8>>,
    /// What the exit needs to know about this sink.
    counts: Arc<SinkCounts>,
}

/// Counters a [`Sink`] shares with its writer thread.
#[derive(Default)]
struct SinkCounts {
    /// Lines queued and not yet written: zero means the destination has every line
    /// that was not dropped.
    unwritten: AtomicUsize,
    /// Lines dropped because the queue was full (the destination could not keep up).
    dropped: AtomicUsize,
}

impl Sink {
    /// Starts the writer thread `name` on `destination`.
    fn start(name: &str, mut destination: impl Write + Send + 'static) -> std::io::Result<Sink> {
        let (queue, lines) = sync_channel::<Vec<u8>>(BUFFERED_LINES);
        let counts = Arc::new(SinkCounts::default());
        let written = counts.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for line in lines {
                    // A destination that fails (a closed stderr) loses the line; nothing
                    // else can be done with it.
                    let _ = destination.write_all(&line);
                    written.unwritten.fetch_sub(1, Ordering::Release);
                }
            })?;
        Ok(Sink { queue, counts })
    }

    /// Queues one line, or drops and counts it when the queue is full.
    fn push(&self, line: &[u8]) {
        self.counts.unwritten.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(line.to_vec()).is_err() {
            self.counts.unwritten.fetch_sub(1, Ordering::AcqRel);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues one line, waiting until `deadline` at most for room (the report of
    /// dropped lines at exit: the queue is full exactly when there is one to make).
    fn push_by(&self, line: &[u8], deadline: Instant) {
        self.counts.unwritten.fetch_add(1, Ordering::AcqRel);
        let mut line = line.to_vec();
        loop {
            match self.queue.try_send(line) {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    line = match e {
                        std::sync::mpsc::TrySendError::Full(l) => l,
                        std::sync::mpsc::TrySendError::Disconnected(_) => break,
                    };
                    std::thread::sleep(DRAIN_POLL);
                }
                Err(_) => break,
            }
        }
        self.counts.unwritten.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether every queued line has been written.
    fn is_drained(&self) -> bool {
        self.counts.unwritten.load(Ordering::Acquire) == 0
    }

    fn dropped(&self) -> usize {
        self.counts.dropped.load(Ordering::Relaxed)
    }
}

/// The fmt layer formats each event into one buffer and writes it with one
/// `write_all`, so each `write` here is one whole line.
impl Write for &Sink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = &'a Sink;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Keeps the sinks; dropping it reports dropped lines and gives the sinks a bounded
/// time ([`DRAIN_AT_EXIT`]) to write what they hold. It never waits longer, whatever
/// stderr does.
pub struct LogGuard {
    /// Always there.
    stderr: Option<Sink>,
    /// With `--debug`, when the file could be opened.
    file: Option<Sink>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The trace's last lines first (bounded like the rest).
        actors::trace::finish(DRAIN_AT_EXIT);
        let deadline = Instant::now() + DRAIN_AT_EXIT;
        let stderr_dropped = self.stderr.as_ref().map_or(0, Sink::dropped);
        let file_dropped = self.file.as_ref().map_or(0, Sink::dropped);
        if stderr_dropped > 0 {
            let line = format!(
                "mcp-remote: {stderr_dropped} log lines were dropped because stderr was not being read\n"
            );
            for sink in self.stderr.iter().chain(&self.file) {
                sink.push_by(line.as_bytes(), deadline);
            }
        }
        if let (Some(file), true) = (&self.file, file_dropped > 0) {
            let line = format!(
                "mcp-remote: {file_dropped} log lines were dropped because the debug log could not keep up\n"
            );
            file.push_by(line.as_bytes(), deadline);
        }
        // Every sink gets the same bounded time: a stderr nobody reads costs the exit
        // DRAIN_AT_EXIT, one that is read (late) gets its last lines and the report.
        let sinks: Vec<&Sink> = self.stderr.iter().chain(&self.file).collect();
        let polls = (DRAIN_AT_EXIT.as_millis() / DRAIN_POLL.as_millis()) as usize + 1;
        for _ in 0..polls {
            if sinks.iter().all(|sink| sink.is_drained()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(DRAIN_POLL);
        }
        // The writer threads are left as they are: the process exits next, and one
        // of them may be blocked on a pipe nobody reads.
    }
}

/// Check the config folder (owner and mode: [`actors::store::secure_folder`]),
/// then install the subscriber. A folder another user owns ends the process:
/// credentials are never kept where someone else can read or replace them.
pub fn start(program: &'static str, settings: &Settings) -> LogGuard {
    start_with_tap(program, settings, None)
}

/// [`start`], with a reader of every trace record (the doctor): the trace is on
/// even without `--trace` or `-v` when there is one.
pub fn start_with_tap(
    program: &'static str,
    settings: &Settings,
    tap: Option<actors::trace::Tap>,
) -> LogGuard {
    let narrowed = match actors::store::secure_folder(&settings.config_dir) {
        Ok(narrowed) => narrowed,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(1);
        }
    };
    let guard = init(settings);
    if let Some(mode) = narrowed {
        tracing::warn!(
            "the config folder {} was open to other users (mode {mode:o}); made it private (700)",
            settings.config_dir.display()
        );
    }
    if settings.trace.enabled() || tap.is_some() {
        let start = serde_json::json!({
            "program": program,
            "version": env!("CARGO_PKG_VERSION"),
            "server": machines::trace::redact_url(&settings.url),
            "key": settings.key,
            "flags": flags_given(),
        });
        if let Err(e) = actors::trace::install(&settings.trace, start, tap) {
            let file = settings
                .trace
                .file
                .as_deref()
                .unwrap_or(std::path::Path::new("?"));
            tracing::warn!(
                "cannot write the trace to {} ({e}); going on without it",
                file.display()
            );
        } else if let Some(file) = &settings.trace.file {
            tracing::info!("writing the trace to {}", file.display());
        }
    }
    guard
}

/// The flags on the command line, by name only (their values may be secrets).
fn flags_given() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a.starts_with('-'))
        .map(|a| a.split('=').next().unwrap_or_default().to_owned())
        .collect()
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
    let stderr = match Sink::start("mcp-remote-log", std::io::stderr()) {
        Ok(sink) => Some(sink),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "mcp-remote: cannot start logging: {e}");
            None
        }
    };
    let stderr_layer = stderr.clone().map(|sink| {
        fmt::layer()
            .with_writer(sink)
            .with_ansi(false)
            .with_target(false)
            .with_filter(ours(level))
    });

    let file = if settings.debug {
        match open_debug_log(settings).and_then(|file| Sink::start("mcp-remote-debug-log", file)) {
            Ok(sink) => Some(sink),
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
    let file_layer = file.clone().map(|sink| {
        fmt::layer()
            .with_writer(sink)
            .with_ansi(false)
            .with_filter(ours(LevelFilter::DEBUG))
    });
    tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .init();
    LogGuard { stderr, file }
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
    actors::store::private_no_follow(&mut options);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A destination whose writes block until the test lets them through, like a pipe
    /// nobody reads.
    struct Blocked(mpsc::Receiver<()>);

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_destination_drops_and_counts_lines_and_never_blocks_the_writer() {
        let (release, gate) = mpsc::channel();
        let sink = Sink::start("test-blocked", Blocked(gate)).unwrap();
        let lines = BUFFERED_LINES + 100;
        for n in 0..lines {
            (&sink).write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        // One line may be in the writer's hands, the queue holds the next ones.
        let dropped = sink.dropped();
        assert!(
            (99..=100).contains(&dropped),
            "{dropped} dropped of {lines}"
        );
        assert!(!sink.is_drained());
        for _ in 0..lines {
            let _ = release.send(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sink.is_drained() && Instant::now() < deadline {
            std::thread::sleep(DRAIN_POLL);
        }
        assert!(
            sink.is_drained(),
            "every queued line is written once let through"
        );
    }

    #[test]
    fn the_exit_waits_a_bounded_time_for_a_stderr_that_is_never_read() {
        let (_release, gate) = mpsc::channel::<()>();
        let sink = Sink::start("test-never", Blocked(gate)).unwrap();
        (&sink).write_all(b"stuck\n").unwrap();
        let guard = LogGuard {
            stderr: Some(sink),
            file: None,
        };
        let started = Instant::now();
        drop(guard);
        // Bounded by DRAIN_AT_EXIT; the margin is for a busy machine, not a benchmark.
        assert!(started.elapsed() < DRAIN_AT_EXIT + Duration::from_secs(5));
    }

    #[test]
    fn the_exit_waits_for_a_file_that_keeps_up() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_micros(50));
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::start("test-file", Shared(written.clone())).unwrap();
        for n in 0..200 {
            (&sink).write_all(format!("{n}\n").as_bytes()).unwrap();
        }
        drop(LogGuard {
            stderr: None,
            file: Some(sink),
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 200);
        assert_eq!(text.lines().last(), Some("199"));
    }
}
