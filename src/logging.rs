//! Logging: stderr only (stdout is the protocol), plus `<key>_debug.log` in the
//! config folder with `--debug`.
//!
//! Invariant 8: many MCP hosts never read the server's stderr; once that pipe is
//! full a blocking write would freeze the proxy. Each sink is a bounded buffer of
//! whole lines drained by its own thread: the message path only ever appends, and
//! when the buffer is full the line is dropped and counted, never waited for. The
//! thread, once woken, lets lines gather for a few milliseconds, so a log line per
//! relayed message costs no thread wake-up per message. Invariant 7 holds whatever stderr does: at exit the sinks get a
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
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Bytes buffered per sink before new lines are dropped.
const BUFFERED_BYTES: usize = 256 * 1024;

/// How long a writer thread, once woken, lets lines gather before it writes them:
/// a line per relayed message then costs the message path no thread wake-up of
/// its own (one per this interval at most), and the destination one `write` per
/// interval. A person reading stderr does not see the difference.
const GATHER_FOR: Duration = Duration::from_millis(5);

/// How long the exit waits, at most, for the sinks to write what they hold: the
/// debug log file then holds every line, and a host that reads stderr sees the last
/// ones, while a stderr nobody reads costs the exit no more than this (invariant 7:
/// exit within a second or two of stdin's end).
const DRAIN_AT_EXIT: Duration = Duration::from_millis(300);

/// How often the exit looks whether the sinks are drained.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// One log destination: whole lines are appended to a bounded buffer, and a thread
/// of its own writes them, so only that thread ever blocks on the destination.
#[derive(Clone)]
struct Sink {
    shared: Arc<SinkShared>,
}

struct SinkShared {
    state: Mutex<SinkState>,
    /// The writer thread waits on it when there is nothing to write.
    work: Condvar,
    /// Lines dropped because the buffer was full (the destination could not keep up).
    dropped: AtomicUsize,
}

#[derive(Default)]
struct SinkState {
    /// Whole lines not yet taken by the writer.
    buffer: Vec<u8>,
    /// Bytes taken by the writer and not yet written.
    writing: usize,
    /// The writer waits for work: the next line must wake it.
    idle: bool,
}

impl Sink {
    /// Starts the writer thread `name` on `destination`.
    fn start(name: &str, mut destination: impl Write + Send + 'static) -> std::io::Result<Sink> {
        let shared = Arc::new(SinkShared {
            state: Mutex::new(SinkState::default()),
            work: Condvar::new(),
            dropped: AtomicUsize::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut spare = Vec::new();
                loop {
                    {
                        let mut state = writer.lock();
                        while state.buffer.is_empty() {
                            state.idle = true;
                            state = writer.work.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    std::thread::sleep(GATHER_FOR);
                    let mut state = writer.lock();
                    std::mem::swap(&mut state.buffer, &mut spare);
                    state.writing = spare.len();
                    drop(state);
                    // A destination that fails (a closed stderr) loses the lines; nothing
                    // else can be done with them.
                    let _ = destination.write_all(&spare);
                    let _ = destination.flush();
                    spare.clear();
                    writer.lock().writing = 0;
                }
            })?;
        Ok(Sink { shared })
    }

    /// Appends one line, or drops and counts it when the buffer is full.
    fn push(&self, line: &[u8]) {
        if !self.try_push(line) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn try_push(&self, line: &[u8]) -> bool {
        let mut state = self.shared.lock();
        if state.buffer.len() + line.len() > BUFFERED_BYTES {
            return false;
        }
        state.buffer.extend_from_slice(line);
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
        true
    }

    /// Appends one line, waiting until `deadline` at most for room (the report of
    /// dropped lines at exit: the buffer is full exactly when there is one to make).
    fn push_by(&self, line: &[u8], deadline: Instant) {
        while !self.try_push(line) && Instant::now() < deadline {
            std::thread::sleep(DRAIN_POLL);
        }
    }

    /// Whether every line has been written.
    fn is_drained(&self) -> bool {
        let state = self.shared.lock();
        state.buffer.is_empty() && state.writing == 0
    }

    fn dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl SinkShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
            .with_timer(Clock)
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
            .with_timer(Clock)
            .with_ansi(false)
            .with_filter(ours(LevelFilter::DEBUG))
    });
    tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .init();
    LogGuard { stderr, file }
}

/// Each line's time, as tracing's default shows it (`2026-12-06T03:20:11.123456Z`,
/// UTC), with the date and the second formatted once per second: at info level every
/// relayed message is a line, and the full calendar arithmetic each time was a
/// visible part of relaying one.
struct Clock;

impl fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut fmt::format::Writer<'_>) -> std::fmt::Result {
        use std::cell::RefCell;
        thread_local! {
            static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != secs {
                last.1 = second_of(secs);
                last.0 = secs;
            }
            write!(w, "{}.{:06}Z", last.1, now.subsec_micros())
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (UTC): the trace's wall-clock format, cut at the second.
fn second_of(secs: u64) -> String {
    let mut text =
        actors::trace::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    text.truncate("YYYY-MM-DDTHH:MM:SS".len());
    text
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

    #[test]
    fn the_log_clock_writes_the_calendar_second() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_796_521_211, "2026-12-06T01:40:11"),
            (4_107_542_399, "2100-02-28T23:59:59"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ] {
            assert_eq!(second_of(secs), text);
        }
        let mut line = String::new();
        fmt::time::FormatTime::format_time(&Clock, &mut fmt::format::Writer::new(&mut line))
            .unwrap();
        let (second, micros) = line.split_once('.').unwrap();
        assert_eq!(second.len(), 19, "{line}");
        assert!(micros.len() == 7 && micros.ends_with('Z'), "{line}");
    }

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
        // The writer takes the first line and blocks on it.
        (&sink).write_all(b"first\n").unwrap();
        std::thread::sleep(GATHER_FOR * 10);
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let fit = BUFFERED_BYTES / line.len();
        for _ in 0..fit + 100 {
            (&sink).write_all(&line).unwrap();
        }
        assert_eq!(sink.dropped(), 100, "{} lines fit in the buffer", fit);
        assert!(!sink.is_drained());
        for _ in 0..10 {
            let _ = release.send(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sink.is_drained() && Instant::now() < deadline {
            std::thread::sleep(DRAIN_POLL);
        }
        assert!(
            sink.is_drained(),
            "every buffered line is written once let through"
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
