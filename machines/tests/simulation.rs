//! Deterministic simulation of the proxy — the shipped connection engine
//! (`machines::engine`, exactly what the Session actor drives: its host side answers
//! every request once, its network side speaks to the server) and the Grant — on a simulated clock and a seeded,
//! misbehaving network and server (no sockets), in the spirit of str0m's `netem`.
//! Nothing of the Session is copied here: the world feeds the engine the heads, body
//! chunks and ends of HTTP exchanges, as the actor does, and performs what it asks.
//! Each seed gives one schedule; 10,000 seeds per transport run in the normal test
//! suite, and the invariants of DESIGN.md are checked after every step:
//!
//! - only JSON-RPC reaches the host, one message a line (1);
//! - every host request gets exactly one answer, none twice, never the answer to a
//!   request of the proxy's own, and every one is answered by the end (2);
//! - the server executes a request at most once: only what surely never reached it is
//!   sent again (3);
//! - what the engine holds is bounded (4);
//! - at shutdown only the bounded DELETE goes, and the engine closes (7);
//! - reconnections always wait, and never too long; at most one token request is in
//!   flight; the Link and the connection check agree; a check ends within its bound;
//!   no host message goes during a check (its `notifications/initialized` excepted).
//!
//! Liveness findings (a request left to the time-out although the network had been
//! back for 10 s, a message without a session id, a resumption past its budget) are
//! recorded without stopping the seed and checked by tests of their own.
//!
//! - [`world`]: the world (host, engine, network, server of both transports);
//! - [`streamable`]: Streamable HTTP (`--transport http-only`);
//! - [`legacy`]: legacy HTTP+SSE (`--transport sse-only`);
//! - [`modern`]: MCP 2026-07-28 (era found with `server/discover`, a 2025-11-25 host bridged);
//! - [`common`]: the timed event queue, the seed runner and its reports, the Grant glue.

#[path = "simulation/common.rs"]
mod common;
#[path = "simulation/legacy.rs"]
mod legacy;
#[path = "simulation/modern.rs"]
mod modern;
#[path = "simulation/streamable.rs"]
mod streamable;
#[path = "simulation/world.rs"]
mod world;
/// xorshift64*: small, seeded, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
