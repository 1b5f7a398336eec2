//! A fault-injecting TCP relay on `127.0.0.1`, for the chaos suite (issue 5, "Resilience").
//!
//! [`Relay::start`] listens on an ephemeral loopback port and relays every connection it
//! accepts to one upstream address (the testbed), byte for byte, in both directions. A test
//! points the proxy at [`Relay::addr`] instead of the server and then, while traffic flows,
//! turns faults on and off:
//!
//! - [`Relay::set_latency`] and [`Relay::set_jitter`]: every chunk is delivered that much
//!   later (latency plus a uniform draw from `0..=jitter`, from a seeded xorshift), in order.
//! - [`Relay::reset_after_bytes`]: a connection that has relayed that many bytes (both ways,
//!   counted from its start) is reset: both sides get a TCP RST (`SO_LINGER` 0, then close).
//! - [`Relay::random_resets`]: each chunk resets its connection with a given probability.
//! - [`Relay::blackhole_hold`]: nothing is forwarded until [`Relay::clear`]; flows stall,
//!   new connections are accepted and wait too. Nothing is lost: lifting the hold delivers
//!   everything.
//! - [`Relay::blackhole_kill`]: the VPN flap. Every connection open at that moment, and every
//!   one accepted while it lasts, is dead for good: its bytes (FIN included) are read and
//!   dropped, so the peers see neither data nor FIN nor RST. [`Relay::clear`] lets new
//!   connections through again; the dead ones stay dead until a peer gives up on them.
//! - [`Relay::drop_open_connections`]: the route change. Every connection open at that
//!   moment dies the same silent death, but new ones go through at once.
//!
//! Faults are read afresh for every chunk, so a change applies to open connections at once.
//! A connection the upstream refuses is reset, as a load balancer in front of a dead server
//! does. [`Relay::stats`] counts connections, bytes and resets. Dropping the [`Relay`] (or
//! [`Relay::shutdown`]) stops it and closes every connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The largest chunk read at once; faults are decided per chunk.
const CHUNK_BYTES: usize = 16 * 1024;

/// Chunks buffered per direction between reading and writing (for latency and holds); a
/// full queue stops the reading, so a held flow pushes back on its sender.
const QUEUE_CHUNKS: usize = 64;

/// Whether bytes go through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Passage {
    /// Bytes flow (after any latency).
    #[default]
    Open,
    /// Bytes wait, in order, until the passage opens again.
    Held,
    /// Connections open now or accepted now are dead for good.
    Killed,
}

/// The faults in force; every chunk reads them afresh.
#[derive(Clone, Debug, Default)]
struct Faults {
    /// Added to every chunk's delivery time.
    latency: Duration,
    /// Upper bound of the random extra delay of each chunk.
    jitter: Duration,
    /// Reset a connection once it has relayed this many bytes (both ways).
    reset_after: Option<usize>,
    /// Probability that a chunk resets its connection instead of being delivered.
    reset_probability: f64,
    /// Seeds every connection's random draws (with its number and direction).
    seed: u64,
    /// Open, held or killed.
    passage: Passage,
    /// How many times [`Relay::blackhole_kill`] was called: a connection made before the
    /// latest kill is dead, whatever the passage is now.
    kills: u64,
}

/// What the relay counted; see [`Relay::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes delivered from clients to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes delivered from the upstream to clients.
    pub bytes_to_client: u64,
    /// Connections reset by a fault (byte limit or random), not counting upstream refusals.
    pub resets: u64,
    /// Connections reset because the upstream refused them.
    pub refused: u64,
    /// Bytes read from a dead (killed) connection and dropped.
    pub bytes_dropped: u64,
}

/// Counters shared by all connection tasks.
#[derive(Default)]
struct Counters {
    /// See [`RelayStats::connections`].
    connections: AtomicU64,
    /// See [`RelayStats::bytes_to_upstream`].
    bytes_to_upstream: AtomicU64,
    /// See [`RelayStats::bytes_to_client`].
    bytes_to_client: AtomicU64,
    /// See [`RelayStats::resets`].
    resets: AtomicU64,
    /// See [`RelayStats::refused`].
    refused: AtomicU64,
    /// See [`RelayStats::bytes_dropped`].
    bytes_dropped: AtomicU64,
}

/// What the relay's tasks and its handle share.
struct Shared {
    /// Where connections are relayed to.
    upstream: SocketAddr,
    /// The faults in force; a watch so held flows wake when they change.
    faults: watch::Sender<Faults>,
    /// What happened so far.
    counters: Counters,
    /// Flips to `true` when the relay stops; every task watches it.
    shutdown: watch::Sender<bool>,
}

/// A running relay. Dropping it stops the relay and closes every connection.
pub struct Relay {
    /// The state the tasks share.
    shared: Arc<Shared>,
    /// The loopback address clients connect to.
    addr: SocketAddr,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl Relay {
    /// Listens on an ephemeral port of `127.0.0.1` and relays to `upstream` (which must be a
    /// loopback address), with no fault, on the current tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Relay> {
        if !upstream.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the relay forwards to loopback addresses only",
            ));
        }
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: watch::Sender::new(Faults::default()),
            counters: Counters::default(),
            shutdown: watch::Sender::new(false),
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Relay { shared, addr })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Delays every chunk by `latency` (plus jitter); zero turns it off.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// Adds a random delay of up to `jitter` to every chunk; order is kept, so a late
    /// chunk delays the ones behind it.
    pub fn set_jitter(&self, jitter: Duration) {
        self.shared.faults.send_modify(|f| f.jitter = jitter);
    }

    /// Seeds the random draws (jitter and random resets) of connections made from now on.
    pub fn set_seed(&self, seed: u64) {
        self.shared.faults.send_modify(|f| f.seed = seed);
    }

    /// Resets every connection once it has relayed `bytes` bytes, both directions together
    /// (the bytes up to the limit are delivered first); `None` turns it off. A connection
    /// already past the limit is reset at its next chunk.
    pub fn reset_after_bytes(&self, bytes: Option<usize>) {
        self.shared.faults.send_modify(|f| f.reset_after = bytes);
    }

    /// Resets a connection, instead of delivering a chunk, with `probability` per chunk
    /// (0 turns it off); `seed` seeds the draws of connections made from now on.
    pub fn random_resets(&self, probability: f64, seed: u64) {
        self.shared.faults.send_modify(|f| {
            f.reset_probability = probability.clamp(0.0, 1.0);
            f.seed = seed;
        });
    }

    /// Forwards nothing until [`Relay::clear`]: open flows stall, new connections are
    /// accepted and stall too; then everything is delivered, in order.
    pub fn blackhole_hold(&self) {
        self.shared
            .faults
            .send_modify(|f| f.passage = Passage::Held);
    }

    /// Kills every open connection silently (bytes and FIN dropped, no RST: the peers see
    /// nothing) and treats new ones the same until [`Relay::clear`]. Killed connections stay
    /// dead after the clear.
    pub fn blackhole_kill(&self) {
        self.shared.faults.send_modify(|f| {
            f.passage = Passage::Killed;
            f.kills += 1;
        });
    }

    /// The route change (a VPN reconnecting with a new route, a NAT that forgot its
    /// mappings): every connection open at this moment is dead for good, silently, as with
    /// [`Relay::blackhole_kill`] (bytes and FIN dropped, no RST), while new connections go
    /// through at once. No fault stays in force: there is nothing to [`Relay::clear`].
    pub fn drop_open_connections(&self) {
        self.shared.faults.send_modify(|f| f.kills += 1);
    }

    /// Turns every fault off: no latency, jitter or resets, passage open. Connections killed
    /// by [`Relay::blackhole_kill`] stay dead.
    pub fn clear(&self) {
        self.shared.faults.send_modify(|f| {
            *f = Faults {
                seed: f.seed,
                kills: f.kills,
                ..Faults::default()
            };
        });
    }

    /// What the relay counted so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.shared.counters;
        RelayStats {
            connections: c.connections.load(Ordering::Relaxed),
            bytes_to_upstream: c.bytes_to_upstream.load(Ordering::Relaxed),
            bytes_to_client: c.bytes_to_client.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            bytes_dropped: c.bytes_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and closes every connection (without RST).
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Resolves once the relay shuts down; the watch guard is dropped here so futures stay `Send`.
async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// Accepts connections until shutdown, one task each.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = until_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let number = shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    // The faults at accept time decide whether the connection is born dead.
                    let born = shared.faults.borrow().clone();
                    tokio::spawn(connection(client, shared.clone(), number, born));
                }
                // Out of file descriptors or similar: let it pass rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// Which way a chunk travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

/// Why a connection ends with a reset rather than a close.
#[derive(Debug)]
enum Reset {
    /// A fault fired (byte limit or random draw); counted.
    Injected,
    /// A peer failed (write error); the other side gets a reset too, not counted.
    Peer,
}

/// One relayed connection's own state, shared by its two directions.
struct Link {
    /// The connection's number, mixed into its random seeds.
    number: u64,
    /// The value of [`Faults::kills`] when the connection was made; a later kill makes it dead.
    kills_at_birth: u64,
    /// Bytes delivered so far, both ways (for [`Relay::reset_after_bytes`]).
    relayed: AtomicUsize,
}

impl Link {
    /// Whether the connection is dead under these faults.
    fn is_dead(&self, faults: &Faults) -> bool {
        faults.kills != self.kills_at_birth
    }
}

/// Relays one client connection until either side ends it, a fault resets it, or the relay
/// shuts down.
async fn connection(mut client: TcpStream, shared: Arc<Shared>, number: u64, born: Faults) {
    let _ = client.set_nodelay(true);
    let mut shutdown = shared.shutdown.subscribe();
    let faults = shared.faults.subscribe();
    if born.passage == Passage::Killed {
        // Accepted into a blackhole: read and drop everything, answer nothing, ever.
        tokio::select! {
            _ = until_shutdown(&mut shutdown) => {}
            _ = swallow(&mut client, &shared) => {}
        }
        return;
    }
    let link = Link {
        number,
        kills_at_birth: born.kills,
        relayed: AtomicUsize::new(0),
    };
    let mut upstream = match TcpStream::connect(shared.upstream).await {
        Ok(upstream) => upstream,
        Err(_) => {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let ended = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pipe(
            client_read,
            upstream_write,
            Direction::Up,
            &link,
            &shared,
            faults.clone(),
        );
        let down = pipe(
            upstream_read,
            client_write,
            Direction::Down,
            &link,
            &shared,
            faults,
        );
        tokio::select! {
            ended = async { tokio::try_join!(up, down) } => ended.map(|_| ()),
            _ = until_shutdown(&mut shutdown) => Ok(()),
        }
    };
    if let Err(reset) = ended {
        if matches!(reset, Reset::Injected) {
            shared.counters.resets.fetch_add(1, Ordering::Relaxed);
        }
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
}

/// Reads a dead connection to its end, dropping every byte, then keeps it open: its FIN is
/// lost like the rest. Returns only if reading fails.
async fn swallow(stream: &mut TcpStream, shared: &Shared) {
    let mut buf = vec![0; CHUNK_BYTES];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => std::future::pending::<()>().await,
            Ok(n) => {
                shared
                    .counters
                    .bytes_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

/// One direction of a connection: a reader stamps each chunk with its delivery time and
/// queues it; a writer waits for that time and for the passage to open, applies the reset
/// faults, and delivers. The end of the input becomes a FIN, unless the link is dead.
async fn pipe(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    direction: Direction,
    link: &Link,
    shared: &Shared,
    mut faults: watch::Receiver<Faults>,
) -> Result<(), Reset> {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let seed = faults.borrow().seed;
    let mut rng =
        XorShift::new(seed ^ (link.number << 1) ^ u64::from(direction == Direction::Down));
    let mut delay_rng = rng.fork();
    let stamp = faults.clone();
    let reader = async move {
        let mut last_due = Instant::now();
        loop {
            let mut buf = vec![0; CHUNK_BYTES];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            let (latency, jitter) = {
                let f = stamp.borrow();
                (f.latency, f.jitter)
            };
            let extra = match jitter.as_nanos() as u64 {
                0 => 0,
                max => delay_rng.next() % (max + 1),
            };
            let due = (Instant::now() + latency + Duration::from_nanos(extra)).max(last_due);
            last_due = due;
            if queue.send((due, buf)).await.is_err() {
                break;
            }
        }
        drop(queue);
    };
    let writer = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            // Wait while held; find out whether the link died.
            let dead = loop {
                let (passage, dead) = {
                    let f = faults.borrow_and_update();
                    (f.passage, link.is_dead(&f))
                };
                match passage {
                    _ if dead => break true,
                    Passage::Held => {
                        if faults.changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Passage::Open | Passage::Killed => break false,
                }
            };
            if dead {
                shared
                    .counters
                    .bytes_dropped
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                continue;
            }
            let (limit, probability) = {
                let f = faults.borrow();
                (f.reset_after, f.reset_probability)
            };
            if probability > 0.0 && rng.unit() < probability {
                return Err(Reset::Injected);
            }
            let before = link.relayed.fetch_add(chunk.len(), Ordering::Relaxed);
            let (deliver, reset) = match limit {
                Some(limit) if before + chunk.len() >= limit => {
                    (limit.saturating_sub(before), true)
                }
                _ => (chunk.len(), false),
            };
            if deliver > 0 {
                if to.write_all(&chunk[..deliver]).await.is_err() {
                    return Err(Reset::Peer);
                }
                let counter = match direction {
                    Direction::Up => &shared.counters.bytes_to_upstream,
                    Direction::Down => &shared.counters.bytes_to_client,
                };
                counter.fetch_add(deliver as u64, Ordering::Relaxed);
            }
            if reset {
                return Err(Reset::Injected);
            }
        }
        if link.is_dead(&faults.borrow()) {
            // A dead link loses its FIN too.
            std::future::pending::<()>().await;
        }
        let _ = to.shutdown().await;
        Ok(())
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        ended = &mut writer => ended,
        () = &mut reader => writer.await,
    }
}

/// A xorshift64 generator: enough randomness for jitter and resets, reproducible from a
/// seed, and no dependency.
struct XorShift(u64);

impl XorShift {
    /// A generator for `seed`, scrambled (splitmix64) so that close seeds diverge and the
    /// state is never zero.
    fn new(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A uniform draw from `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A second, independent generator seeded from this one.
    fn fork(&mut self) -> XorShift {
        XorShift::new(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longest wait for anything in these tests.
    const WAIT: Duration = Duration::from_secs(5);

    /// An upstream that echoes every byte back and closes after the client's FIN.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    /// Sends `bytes` through a new connection to `relay` and reads `len` bytes back.
    async fn round_trip(client: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        client.write_all(bytes).await?;
        let mut back = vec![0; bytes.len()];
        tokio::time::timeout(WAIT, client.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(back)
    }

    /// Reads until end of stream or error; `Ok(bytes)` at a clean end.
    async fn read_to_end(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        tokio::time::timeout(WAIT, client.read_to_end(&mut all))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(all)
    }

    #[test]
    fn xorshift_is_reproducible_and_uniform_enough() {
        let mut a = XorShift::new(7);
        let mut b = XorShift::new(7);
        let draws: Vec<f64> = (0..10_000).map(|_| a.unit()).collect();
        assert!(draws.iter().all(|&d| d == b.unit()));
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below_half = draws.iter().filter(|&&d| d < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
        assert_ne!(XorShift::new(7).next(), XorShift::new(8).next());
    }

    #[tokio::test]
    async fn relays_both_ways_and_passes_the_fin_on() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"hello").await.unwrap(), b"hello");
        client.write_all(b"bye").await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut client).await.unwrap(), b"bye");
        let stats = relay.stats();
        assert_eq!(stats.connections, 1);
        assert_eq!((stats.bytes_to_upstream, stats.bytes_to_client), (8, 8));
    }

    #[tokio::test]
    async fn latency_delays_delivery() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        relay.set_latency(Duration::from_millis(100));
        relay.set_jitter(Duration::from_millis(20));
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        let sent = Instant::now();
        assert_eq!(round_trip(&mut client, b"x").await.unwrap(), b"x");
        // Once each way.
        assert!(sent.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn resets_after_the_byte_limit() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        relay.reset_after_bytes(Some(10));
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        // 4 bytes up and 4 back: under the limit.
        assert_eq!(round_trip(&mut client, b"abcd").await.unwrap(), b"abcd");
        // 2 more up reach it: delivered, then the connection is reset.
        client.write_all(b"efgh").await.unwrap();
        let error = read_to_end(&mut client).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(relay.stats().resets, 1);
        relay.clear();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, &[7; 64]).await.unwrap(), [7; 64]);
    }

    #[tokio::test]
    async fn random_resets_reset_some_connections() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        relay.random_resets(1.0, 3);
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        assert!(round_trip(&mut client, b"doomed").await.is_err());
        assert_eq!(relay.stats().resets, 1);
    }

    #[tokio::test]
    async fn a_hold_delivers_everything_once_lifted() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"1").await.unwrap(), b"1");
        relay.blackhole_hold();
        open.write_all(b"held").await.unwrap();
        let mut fresh = TcpStream::connect(relay.addr()).await.unwrap();
        fresh.write_all(b"new").await.unwrap();
        let mut byte = [0; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), open.read(&mut byte)).await;
        assert!(early.is_err(), "nothing comes through while held");
        relay.clear();
        let mut back = [0; 4];
        tokio::time::timeout(WAIT, open.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"held");
        let mut back = [0; 3];
        tokio::time::timeout(WAIT, fresh.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"new");
    }

    #[tokio::test]
    async fn a_kill_is_silent_and_lasts_for_the_flows_it_hit() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"1").await.unwrap(), b"1");
        relay.blackhole_kill();
        let mut during = TcpStream::connect(relay.addr()).await.unwrap();
        during.write_all(b"lost").await.unwrap();
        // Let the relay accept it while the kill lasts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.clear();
        open.write_all(b"lost too").await.unwrap();
        open.shutdown().await.unwrap();
        let mut byte = [0; 1];
        for dead in [&mut open, &mut during] {
            // No data, no FIN, no RST: the read just waits.
            let read = tokio::time::timeout(Duration::from_millis(300), dead.read(&mut byte)).await;
            assert!(read.is_err(), "a killed flow stays silent: {read:?}");
        }
        let mut after = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut after, b"back").await.unwrap(), b"back");
        assert!(relay.stats().bytes_dropped >= 12);
    }

    #[tokio::test]
    async fn a_route_change_kills_open_flows_silently_and_lets_new_ones_through() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"1").await.unwrap(), b"1");
        relay.drop_open_connections();
        let mut after = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut after, b"at once").await.unwrap(),
            b"at once"
        );
        open.write_all(b"lost").await.unwrap();
        open.shutdown().await.unwrap();
        let mut byte = [0; 1];
        // No data, no FIN, no RST: the read just waits.
        let read = tokio::time::timeout(Duration::from_millis(300), open.read(&mut byte)).await;
        assert!(
            read.is_err(),
            "a flow open at the drop stays silent: {read:?}"
        );
        assert!(relay.stats().bytes_dropped >= 4);
        assert_eq!(round_trip(&mut after, b"still").await.unwrap(), b"still");
    }

    #[tokio::test]
    async fn a_refused_upstream_is_a_reset() {
        let gone = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let relay = Relay::start(addr).await.unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        let _ = client.write_all(b"anyone?").await;
        let error = read_to_end(&mut client).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(relay.stats().refused, 1);
    }
}
