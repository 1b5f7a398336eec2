//! The host's stdout: the only writer of stdout. One compact JSON-RPC message per
//! line, in the order the Session produced them (MCP stdio transport: nothing else
//! may appear on stdout).
//!
//! [`HostOutput`] is a queue drained by one thread of its own (`mcp-remote-stdout`):
//! the Session only appends a line under a short lock, and the thread is woken only
//! when it waits for work, so a burst of answers costs one wake-up and, for small
//! lines, one `write` (they are gathered into one buffer; a large line is written
//! from where it lies, never copied). tokio's `Stdout` would instead hand every
//! write to its blocking pool: a thread hand-off per message.
//!
//! Backpressure: the queue counts the bytes it holds. When a host stops reading
//! its stdout, the queue grows past its limit ([`DEFAULT_LIMIT`]) and [`HostOutput::room`]
//! waits until the thread has written it down again; the Session asks for room
//! before it reads each chunk of an HTTP body, so what the server sends stays in
//! the socket (TCP flow control) instead of in this process, and tells the
//! connection engine, whose liveness checks must not take that silence for a dead
//! network.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::Notify;

/// Bytes the queue may hold before body reads wait: a few large messages' worth.
pub const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

/// Small lines are gathered into one write up to this size.
const GATHER: usize = 64 * 1024;

/// A handle on the stdout queue; clones share it.
#[derive(Clone)]
pub struct HostOutput {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits on it when the queue is empty.
    work: Condvar,
    /// Bytes queued and not yet written (read without the lock by [`HostOutput::room`]).
    queued: AtomicUsize,
    /// The output failed (the host closed our stdout): lines are dropped from now on.
    closed: AtomicBool,
    /// Woken each time the thread has written a batch.
    written: Notify,
    /// Bytes queued over which bodies are not read further.
    limit: usize,
    /// Bytes of incomplete messages the Session holds for the bodies it reads.
    held: AtomicUsize,
    /// Over `held_limit`, the one exchange that may read on (its id + 1; 0: none).
    lead: AtomicU64,
    /// See [`HostOutput::set_held`].
    held_limit: usize,
    /// The descriptor a short line may be written to at once, from the caller's
    /// thread, when nothing is queued and the pipe has room (the real stdout).
    direct: Option<i32>,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    /// The thread is waiting on `work` (a new line must wake it).
    idle: bool,
}

impl HostOutput {
    /// Writes to this process's stdout from a thread of its own.
    pub fn stdout(limit: usize, held_limit: usize) -> std::io::Result<HostOutput> {
        widen_pipe(1);
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            // Written as it is, not through std's line buffer (which looks for the last
            // newline in each write: a scan of every large message). A copy of the
            // descriptor, so the thread owns what it closes; close-on-exec, so a
            // program this process starts (the browser) does not hold the host's pipe
            // open after the proxy exits.
            if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
                return Self::start_on(std::fs::File::from(fd), limit, held_limit, Some(1));
            }
        }
        Self::start_on(std::io::stdout(), limit, held_limit, None)
    }

    /// Writes to `output` from a thread of its own; body reads wait while more than
    /// `limit` bytes are queued.
    pub fn start(output: impl Write + Send + 'static, limit: usize) -> std::io::Result<HostOutput> {
        Self::start_on(output, limit, usize::MAX, None)
    }

    fn start_on(
        output: impl Write + Send + 'static,
        limit: usize,
        held_limit: usize,
        direct: Option<i32>,
    ) -> std::io::Result<HostOutput> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            queued: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            written: Notify::new(),
            limit,
            held: AtomicUsize::new(0),
            lead: AtomicU64::new(0),
            held_limit,
            direct,
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("mcp-remote-stdout".into())
            .spawn(move || write_loop(&writer, output))?;
        Ok(HostOutput { shared })
    }

    /// Queues one message; the writer ends it with a newline (adding it here could
    /// copy a large message to a bigger allocation).
    pub fn send(&self, line: Vec<u8>) {
        if self.shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let wake = {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut line = line;
            if let (Some(fd), true) = (self.shared.direct, state.idle && state.lines.is_empty()) {
                // Nothing before it is unwritten (the thread waits, holding nothing):
                // write it now rather than wake the thread for it.
                match write_now(fd, &line) {
                    Written::All => return,
                    Written::Part(n) => {
                        line.drain(..n.min(line.len()));
                    }
                    Written::None => {}
                }
            }
            self.shared
                .queued
                .fetch_add(line.len() + 1, Ordering::AcqRel);
            state.lines.push_back(line);
            std::mem::take(&mut state.idle)
        };
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Whether exchange `exchange` may read the next chunk of its body: the queue
    /// is under its limit, and so are the incomplete messages held for bodies, or
    /// this exchange is the one that finishes its message first (a few atomic loads).
    pub fn may_read(&self, exchange: u64) -> bool {
        self.shared.may_read(exchange)
    }

    /// The Session holds `total` bytes of incomplete messages; over the limit given
    /// at the start (one message's worth), only `lead` reads on, so that however many
    /// large answers arrive at once, one at a time is completed, not all of them.
    pub fn set_held(&self, total: usize, lead: Option<u64>) {
        self.shared.held.store(total, Ordering::Release);
        self.shared
            .lead
            .store(lead.map_or(0, |l| l + 1), Ordering::Release);
        self.shared.written.notify_waiters();
    }

    /// The limit on incomplete messages (see [`HostOutput::set_held`]).
    pub fn held_limit(&self) -> usize {
        self.shared.held_limit
    }

    /// Returns when exchange `exchange` may read (see [`HostOutput::may_read`]).
    pub async fn room_for(&self, exchange: u64) {
        self.until(|s| s.may_read(exchange)).await;
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Returns at once while the queue and the incomplete messages are under their
    /// limits, else when the host has read enough (or stdout is gone).
    pub async fn room(&self) {
        self.until(|s| {
            s.queued.load(Ordering::Acquire) <= s.limit
                && s.held.load(Ordering::Acquire) <= s.held_limit
        })
        .await;
    }

    /// Returns when everything queued is written (or stdout is gone).
    pub async fn drained(&self) {
        self.until(|s| s.queued.load(Ordering::Acquire) == 0).await;
    }

    async fn until(&self, ready: impl Fn(&Shared) -> bool) {
        let shared = &self.shared;
        loop {
            if ready(shared) || shared.closed.load(Ordering::Acquire) {
                return;
            }
            let notified = shared.written.notified();
            tokio::pin!(notified);
            // Registered before the second look: a batch written in between wakes it.
            notified.as_mut().enable();
            if ready(shared) || shared.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// How large a pipe to the host is made (Linux; the unprivileged maximum by default).
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1024 * 1024;

/// When `fd` is a pipe, make its buffer [`PIPE_SIZE`] (Linux): a large message then
/// crosses it in a few writes and wake-ups instead of one per 64 KiB. Anything else
/// (a file, a terminal, another system) is left as it is.
pub fn widen_pipe(fd: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a descriptor this process owns; F_SETPIPE_SZ fails harmlessly
    // (EBADF, EINVAL, EPERM) on anything that is not a pipe or over the system limit.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// The longest line written from the caller's thread: a pipe that polls writable has
/// room for this much on Linux (PIPE_BUF), so the write cannot block. (Elsewhere a pipe
/// or socket may poll writable with 512 bytes free: every line goes through the queue.)
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const DIRECT_MAX: usize = 4095;

/// What [`write_now`] got out.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum Written {
    /// The line and its newline.
    All,
    /// This many bytes of the line (the rest, and the newline, go through the queue).
    Part(usize),
    /// Nothing: the pipe is full, the line long, or the write failed (the thread
    /// meets the failure again and reports it).
    None,
}

/// Writes `line` and a newline to `fd` if that cannot block.
#[cfg(target_os = "linux")]
fn write_now(fd: i32, line: &[u8]) -> Written {
    if line.len() > DIRECT_MAX {
        return Written::None;
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero time-out: it only looks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready != 1 || poll.revents & libc::POLLOUT == 0 || poll.revents & libc::POLLERR != 0 {
        return Written::None;
    }
    let parts = [
        libc::iovec {
            iov_base: line.as_ptr() as *mut libc::c_void,
            iov_len: line.len(),
        },
        libc::iovec {
            iov_base: b"\n".as_ptr() as *mut libc::c_void,
            iov_len: 1,
        },
    ];
    // SAFETY: both buffers are valid for their lengths and only read.
    let n = unsafe { libc::writev(fd, parts.as_ptr(), 2) };
    match usize::try_from(n) {
        Ok(n) if n == line.len() + 1 => Written::All,
        Ok(n) => Written::Part(n),
        Err(_) => Written::None,
    }
}

#[cfg(not(target_os = "linux"))]
fn write_now(_: i32, _: &[u8]) -> Written {
    Written::None
}

impl Shared {
    fn may_read(&self, exchange: u64) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        if self.queued.load(Ordering::Acquire) > self.limit {
            return false;
        }
        self.held.load(Ordering::Acquire) <= self.held_limit
            || self.lead.load(Ordering::Acquire) == exchange + 1
    }
}

fn write_loop(shared: &Shared, mut output: impl Write) {
    let mut gathered: Vec<u8> = Vec::with_capacity(GATHER);
    loop {
        let batch = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.lines.is_empty() {
                state.idle = true;
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.idle = false;
            std::mem::take(&mut state.lines)
        };
        let bytes: usize = batch.iter().map(|l| l.len() + 1).sum();
        let mut written = Ok(());
        for line in batch {
            if written.is_err() {
                break;
            }
            if gathered.len() + line.len() < GATHER {
                gathered.extend_from_slice(&line);
                gathered.push(b'\n');
                continue;
            }
            if !gathered.is_empty() {
                written = output.write_all(&gathered);
                gathered.clear();
            }
            if written.is_ok() {
                written = output.write_all(&line);
            }
            gathered.push(b'\n');
        }
        if written.is_ok() && !gathered.is_empty() {
            written = output.write_all(&gathered);
        }
        gathered.clear();
        if written.is_ok() {
            written = output.flush();
        }
        if let Err(e) = written {
            // The host closed our stdout: nobody can hear us any more.
            tracing::warn!("writing to stdout failed: {e}");
            shared.closed.store(true, Ordering::Release);
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.lines.clear();
            shared.queued.store(0, Ordering::Release);
            drop(state);
            shared.written.notify_waiters();
            return;
        }
        shared.queued.fetch_sub(bytes, Ordering::AcqRel);
        shared.written.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// An output that hands each write to the test, and blocks while the test says so.
    struct Gate {
        writes: mpsc::Sender<Vec<u8>>,
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            let _ = self.writes.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    type Switch = Arc<(Mutex<bool>, Condvar)>;

    fn gate(open: bool) -> (Gate, mpsc::Receiver<Vec<u8>>, Switch) {
        let (tx, rx) = mpsc::channel();
        let state = Arc::new((Mutex::new(open), Condvar::new()));
        (
            Gate {
                writes: tx,
                open: state.clone(),
            },
            rx,
            state,
        )
    }

    fn open(state: &(Mutex<bool>, Condvar)) {
        *state.0.lock().unwrap() = true;
        state.1.notify_all();
    }

    #[tokio::test]
    async fn lines_come_out_whole_and_in_order_small_ones_gathered() {
        let (g, writes, state) = gate(false);
        let out = HostOutput::start(g, 1 << 20).unwrap();
        for i in 0..100 {
            out.send(format!("{{\"id\":{i}}}").into_bytes());
        }
        let big = vec![b'x'; 3 * GATHER];
        out.send(big.clone());
        out.send(b"{\"id\":\"last\"}".to_vec());
        open(&state);
        tokio::time::timeout(Duration::from_secs(5), out.drained())
            .await
            .unwrap();
        let all: Vec<Vec<u8>> = writes.try_iter().collect();
        let joined: Vec<u8> = all.concat();
        let mut expected = Vec::new();
        for i in 0..100 {
            expected.extend_from_slice(format!("{{\"id\":{i}}}\n").as_bytes());
        }
        expected.extend_from_slice(&big);
        expected.push(b'\n');
        expected.extend_from_slice(b"{\"id\":\"last\"}\n");
        assert_eq!(joined, expected);
        // The first line may have been written alone; the rest were gathered.
        assert!(all.len() <= 5, "{} writes", all.len());
        assert!(all.iter().any(|w| w == &big), "the big line as it lay");
    }

    #[tokio::test]
    async fn room_waits_while_the_host_does_not_read() {
        let (g, _writes, state) = gate(false);
        let out = HostOutput::start(g, 1000).unwrap();
        out.room().await;
        for _ in 0..20 {
            out.send(vec![b'y'; 99]);
        }
        assert_eq!(out.queued(), 2000, "99 bytes and a newline each");
        let waiting = tokio::time::timeout(Duration::from_millis(200), out.room()).await;
        assert!(
            waiting.is_err(),
            "room while 2000 bytes wait over a limit of 1000"
        );
        open(&state);
        tokio::time::timeout(Duration::from_secs(5), out.room())
            .await
            .expect("room once the host reads");
        tokio::time::timeout(Duration::from_secs(5), out.drained())
            .await
            .unwrap();
        assert_eq!(out.queued(), 0);
    }

    #[tokio::test]
    async fn a_closed_stdout_drops_lines_and_never_holds_anyone() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = HostOutput::start(Closed, 10).unwrap();
        for _ in 0..10 {
            out.send(vec![b'z'; 100]);
        }
        tokio::time::timeout(Duration::from_secs(5), out.room())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), out.drained())
            .await
            .unwrap();
        out.send(vec![b'z'; 100]);
        assert_eq!(out.queued(), 0);
    }

    /// The real stdout's path: short lines written at once when the pipe has room,
    /// through the thread when it has not or a line is long, always in order.
    #[cfg(unix)]
    #[tokio::test]
    async fn lines_written_at_once_or_queued_keep_their_order_on_a_pipe() {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: a pipe for this test; both ends are owned by the Files below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (mut reader, writer) = unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        let out = HostOutput::start_on(writer, 1 << 30, usize::MAX, Some(fds[1])).unwrap();
        let mut expected = Vec::new();
        // Far more than the pipe holds while nobody reads: the first lines go at once,
        // the rest wait in the queue.
        for i in 0..5000 {
            let line = if i % 1000 == 999 {
                vec![b'L'; 10_000]
            } else {
                format!("{{\"id\":{i}}}").into_bytes()
            };
            expected.extend_from_slice(&line);
            expected.push(b'\n');
            out.send(line);
        }
        assert!(
            out.queued() > 0,
            "a full pipe sends lines through the queue"
        );
        let reading = std::thread::spawn(move || {
            let mut got = vec![0u8; expected.len()];
            reader.read_exact(&mut got).unwrap();
            (got, expected)
        });
        tokio::time::timeout(Duration::from_secs(10), out.drained())
            .await
            .unwrap();
        let (got, expected) = reading.join().unwrap();
        assert!(got == expected, "every line whole and in order");
    }
}
