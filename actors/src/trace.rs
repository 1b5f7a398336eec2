//! The trace (`--trace [FILE]`, `MCP_REMOTE_TRACE`, `-v`): a timeline of what the
//! proxy did, one JSON object per line, for a user to read or attach to a bug report.
//!
//! The machines build their records as values (`machines::trace`); the actors add
//! what only they see (HTTP exchanges, messages, sign-in steps) and hand every
//! record to [`Tracer::emit`], which stamps it with the microseconds since start
//! and queues it for a writer thread of its own. Invariant 8: the message path only
//! ever tries to queue a line; when the writer cannot keep up (a slow disk, a full
//! one) lines are dropped and counted, and the count is written when there is room.
//! The file is capped: past [`DEFAULT_MAX_FILE_BYTES`] it moves to `FILE.1` (the
//! one before is removed) and a new file begins with its own `start` line.
//!
//! A proxy that does not trace never installs a [`Tracer`]: every call site asks
//! [`get`] (one atomic load) and builds nothing.
//!
//! No secret: URLs are redacted (`machines::trace::redact_url`), headers are shown
//! by name only, bodies only with `--trace-bodies` and redacted
//! (`machines::trace::redact_json`), tokens never reach the actors that trace.
//! The schema is in the README ("Trace format"); [`SCHEMA`] names its version.

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The schema name and version in every `start` line. A change that removes or
/// renames a field, or changes its meaning, gets a new version.
pub const SCHEMA: &str = "mcp-remote-trace/1";

/// Where a trace file moves to `FILE.1` (two files at most on disk).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Lines queued for the writer before new lines are dropped.
const QUEUED_LINES: usize = 8192;

/// How much a record matters to a human reading `-v` / `-vv` on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Detail {
    /// `-v`: machine steps of the link, the grant and the sign-in, HTTP exchanges.
    Step,
    /// `-vv`: also stream machines, timers.
    Fine,
    /// Never on stderr (the log already says it: log events, messages).
    FileOnly,
}

/// What `--trace`, `--trace-bodies` and `-v` asked for.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// The trace file (`--trace FILE`, `MCP_REMOTE_TRACE`, or the default in the
    /// config folder for a bare `--trace`); none: `-v` alone.
    pub file: Option<PathBuf>,
    /// `--trace-bodies`: messages with their (redacted) bodies.
    pub bodies: bool,
    /// `-v` count: 1 renders [`Detail::Step`] records on stderr, 2 also [`Detail::Fine`].
    pub verbosity: u8,
    /// The cap of one trace file.
    pub max_file_bytes: u64,
}

impl TraceSettings {
    /// Whether anything is traced at all.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.verbosity > 0
    }
}

/// Who else reads the records as they come (the doctor).
pub type Tap = Box<dyn Fn(&Value) + Send + Sync>;

/// The installed trace.
pub struct Tracer {
    /// Time zero of every `t`.
    start: Instant,
    /// The writer's queue, with a file.
    queue: Option<SyncSender<String>>,
    /// Lines dropped because the queue was full; the writer reports them.
    dropped: Arc<AtomicU64>,
    /// Records emitted.
    records: AtomicU64,
    /// `--trace-bodies`.
    bodies: bool,
    /// `-v` count.
    verbosity: u8,
    /// The doctor's reader.
    tap: Option<Tap>,
    /// Lines the writer has yet to write (so the exit can wait for them, bounded).
    unwritten: Arc<AtomicU64>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The trace, when one was installed.
#[inline]
pub fn get() -> Option<&'static Tracer> {
    TRACER.get()
}

/// Install the trace: open the file (0600, appended to, no symlink followed),
/// start its writer and write the `start` line. `start` carries what the first
/// line tells (program, version, server, flags given). An unopenable file is an
/// error for the caller to report; the trace is installed without it (`-v` and
/// the tap still work) and the proxy runs on.
pub fn install(
    settings: &TraceSettings,
    start: Value,
    tap: Option<Tap>,
) -> Result<(), std::io::Error> {
    let began = Instant::now();
    let dropped = Arc::new(AtomicU64::new(0));
    let unwritten = Arc::new(AtomicU64::new(0));
    let mut failed = None;
    let opened = match &settings.file {
        Some(path) => match open(path) {
            Ok(file) => Some((path, file)),
            Err(e) => {
                failed = Some(e);
                None
            }
        },
        None => None,
    };
    let queue = match opened {
        Some((path, file)) => {
            let (queue, lines) = sync_channel(QUEUED_LINES);
            let writer = Writer {
                path: path.clone(),
                file: BufWriter::new(file),
                max: settings.max_file_bytes.max(4096),
                start: began,
                start_line: start.clone(),
                dropped: dropped.clone(),
                reported: 0,
                unwritten: unwritten.clone(),
                failed: false,
            };
            std::thread::Builder::new()
                .name("mcp-remote-trace".into())
                .spawn(move || writer.run(lines))?;
            Some(queue)
        }
        None => None,
    };
    let tracer = Tracer {
        start: began,
        queue,
        dropped,
        records: AtomicU64::new(0),
        bodies: settings.bodies,
        verbosity: settings.verbosity,
        tap,
        unwritten,
    };
    let mut first = start;
    if let Value::Object(map) = &mut first {
        map.insert("kind".into(), "start".into());
        map.insert("schema".into(), SCHEMA.into());
        map.insert("start".into(), rfc3339(SystemTime::now()).into());
        map.insert("pid".into(), std::process::id().into());
    }
    if TRACER.set(tracer).is_ok() {
        if let Some(t) = get() {
            t.emit(Detail::FileOnly, first);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Tracer {
    /// Microseconds from the trace's start to `at`.
    pub fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    /// `--trace-bodies`.
    pub fn bodies(&self) -> bool {
        self.bodies
    }

    /// Stamp `record` (a JSON object) with `t` and queue it; render it on stderr when
    /// `-v` asks for this much detail; show it to the tap. Never waits.
    pub fn emit(&self, detail: Detail, record: Value) {
        let t = self.micros(Instant::now());
        self.records.fetch_add(1, Ordering::Relaxed);
        if let Some(queue) = &self.queue {
            let text = record.to_string();
            let line = match text.strip_prefix('{') {
                Some("}") | None => format!("{{\"t\":{t}}}\n"),
                Some(rest) => format!("{{\"t\":{t},{rest}\n"),
            };
            self.unwritten.fetch_add(1, Ordering::AcqRel);
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(line)
            {
                self.unwritten.fetch_sub(1, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let shown = match detail {
            Detail::Step => 1,
            Detail::Fine => 2,
            Detail::FileOnly => u8::MAX,
        };
        if self.verbosity >= shown {
            tracing::info!("{}", human(t, &record));
        }
        if let Some(tap) = &self.tap {
            tap(&record);
        }
    }
}

/// A machine's step as a record: `{"kind":"step","machine":…,"from":…,"event":…,"to":…,"effects":[…]}`.
pub fn step_record(step: machines::trace::Step) -> Value {
    let mut record = json!({
        "kind": "step",
        "machine": step.machine,
        "from": step.from,
        "event": step.event,
        "to": step.to,
        "effects": step.effects,
    });
    if let Some(instance) = step.instance {
        record["instance"] = instance.into();
    }
    record
}

/// At exit: write the `end` line and give the writer `wait` at most to write what
/// it holds (the disk may be stuck; the exit never waits longer).
pub fn finish(wait: Duration) {
    let Some(t) = get() else { return };
    t.emit(
        Detail::FileOnly,
        json!({
            "kind": "end",
            "records": t.records.load(Ordering::Relaxed) + 1,
            "dropped": t.dropped.load(Ordering::Relaxed),
        }),
    );
    let deadline = Instant::now() + wait;
    for _ in 0..1000 {
        if t.unwritten.load(Ordering::Acquire) == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The trace file's writer thread.
struct Writer {
    path: PathBuf,
    file: BufWriter<File>,
    /// Rotate past this many bytes.
    max: u64,
    start: Instant,
    /// The first line, repeated (with a new time) at the top of a rotated file.
    start_line: Value,
    dropped: Arc<AtomicU64>,
    /// Dropped lines already reported in the file.
    reported: u64,
    unwritten: Arc<AtomicU64>,
    /// Writing failed (disk full, file gone): said once in the log.
    failed: bool,
}

impl Writer {
    fn run(mut self, lines: Receiver<String>) {
        let mut size = self.file.get_ref().metadata().map_or(0, |m| m.len());
        while let Ok(line) = lines.recv() {
            let dropped = self.dropped.load(Ordering::Relaxed);
            if dropped > self.reported {
                let t = self.start.elapsed().as_micros();
                let note = format!(
                    "{{\"t\":{t},\"kind\":\"dropped\",\"lines\":{}}}\n",
                    dropped - self.reported
                );
                self.reported = dropped;
                size += self.write(note.as_bytes());
            }
            size += self.write(line.as_bytes());
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
            if size >= self.max {
                size = self.rotate();
            }
            // Flush when nothing waits: a reader sees each line soon, a burst costs one write.
            if self.unwritten.load(Ordering::Acquire) == 0 {
                let flushed = self.file.flush();
                self.note(flushed);
            }
        }
    }

    /// Write (buffered); the bytes count toward the cap even if the disk refused them.
    fn write(&mut self, bytes: &[u8]) -> u64 {
        let written = self.file.write_all(bytes);
        self.note(written);
        bytes.len() as u64
    }

    fn note(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            if !self.failed {
                self.failed = true;
                tracing::warn!(
                    "the trace file {} cannot be written ({e}); the proxy goes on, the trace loses lines",
                    self.path.display()
                );
            }
        }
    }

    /// `FILE` → `FILE.1`, and a new `FILE` that starts with a `start` line. Returns
    /// the new file's size.
    fn rotate(&mut self) -> u64 {
        let flushed = self.file.flush();
        self.note(flushed);
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::remove_file(&old);
        if std::fs::rename(&self.path, &old).is_err() {
            // Not a file that can move (a device, a pipe): keep writing where we are.
            return 0;
        }
        match open(&self.path) {
            Ok(file) => {
                self.file = BufWriter::new(file);
                let mut first = self.start_line.clone();
                if let Value::Object(map) = &mut first {
                    map.insert("kind".into(), "start".into());
                    map.insert("schema".into(), SCHEMA.into());
                    map.insert("start".into(), rfc3339(SystemTime::now()).into());
                    map.insert("pid".into(), std::process::id().into());
                    map.insert("rotated".into(), true.into());
                }
                let t = self.start.elapsed().as_micros();
                let text = first.to_string();
                let line = format!("{{\"t\":{t},{}\n", &text[1..]);
                self.write(line.as_bytes())
            }
            Err(e) => {
                self.note(Err(e));
                0
            }
        }
    }
}

/// The trace file: appended to (a host that restarts the proxy keeps the earlier
/// runs), 0600, never through a symlink.
fn open(path: &std::path::Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    crate::store::private_no_follow(&mut options);
    options.open(path)
}

/// A record for a human on stderr (`-v`).
fn human(t: u64, record: &Value) -> String {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
    let at = format!("[{:>9.3} ms]", t as f64 / 1000.0);
    match s("kind") {
        "step" => {
            let machine = match record.get("instance").and_then(Value::as_str) {
                Some(i) => format!("{} {i}", s("machine")),
                None => s("machine").to_owned(),
            };
            let mut line = format!(
                "{at} {machine}: {} --{}--> {}",
                s("from"),
                s("event"),
                s("to")
            );
            if let Some(effects) = record.get("effects").and_then(Value::as_array) {
                if !effects.is_empty() {
                    let names: Vec<&str> = effects.iter().filter_map(Value::as_str).collect();
                    line.push_str(&format!(" [{}]", names.join(", ")));
                }
            }
            if let Some(detail) = record.get("detail").and_then(Value::as_str) {
                line.push_str(&format!(" ({detail})"));
            }
            line
        }
        "effect" => format!("{at} {}: {} {}", s("machine"), s("effect"), s("detail")),
        "timer" => format!("{at} timer: {}", s("timer")),
        "http" => {
            let status = match record.get("status").and_then(Value::as_u64) {
                Some(code) if s("outcome") == "aborted" => format!("HTTP {code} (then dropped)"),
                Some(code) => format!("HTTP {code}"),
                None => s("error").to_owned(),
            };
            let ms = |k: &str| {
                record
                    .get(k)
                    .and_then(Value::as_u64)
                    .map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0))
            };
            format!(
                "{at} {} {} ({}) -> {status}, headers after {} ms, end after {} ms, {} bytes in, {}",
                s("method"),
                s("url"),
                s("purpose"),
                ms("head_us"),
                ms("end_us"),
                record.get("received").and_then(Value::as_u64).unwrap_or(0),
                match s("connection") {
                    "" => "connection unknown".to_owned(),
                    c => format!("{c} connection"),
                }
            )
        }
        other => format!("{at} {other}: {record}"),
    }
}

/// `2026-12-05T03:20:10.123456Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_times_are_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_440_810_123_456);
        assert_eq!(rfc3339(at), "2026-12-05T03:20:10.123456Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn a_step_reads_as_one_line_for_humans() {
        let line = human(
            1500,
            &json!({"kind": "step", "machine": "link", "from": "live", "event": "StreamLost",
                    "to": "resuming", "effects": ["OpenGetStream"]}),
        );
        assert_eq!(
            line,
            "[    1.500 ms] link: live --StreamLost--> resuming [OpenGetStream]"
        );
    }
}
