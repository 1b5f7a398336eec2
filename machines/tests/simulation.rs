//! Deterministic simulation of the proxy's decision core — Router, Link, Grant and
//! the Session's glue — on a simulated clock and a seeded, misbehaving network (no
//! sockets), in the spirit of str0m's `netem`. Each seed gives one schedule: the host
//! sends requests at random times; the network refuses, loses, delays and (on
//! Streamable HTTP) swallows POSTs for a while; the server answers, slowly at times,
//! forgets sessions and asks for tokens; sign-ins and refreshes succeed or fail.
//! 10,000 seeds per transport run in the normal test suite, and the invariants of
//! DESIGN.md are checked after every step:
//!
//! - every host request gets exactly one answer (the server's or an error), none twice,
//!   and never the answer to a request of the proxy's own;
//! - the server executes a request at most once (only a request that surely never
//!   reached it is sent again);
//! - the link never retries without a delay, and its delays are bounded;
//! - at most one token request is in flight;
//! - the connection check runs at most once at a time, is bounded in time, and
//!   messages wait for it.
//!
//! - [`streamable`]: Streamable HTTP (`--transport http-only`), with the connection
//!   check the Session runs when a POST gets no response in the usual time or fails,
//!   against a network that goes silent for a while and a server with slow tool calls;
//! - [`legacy`]: legacy HTTP+SSE (`--transport sse-only`), on its own simulated server
//!   and event stream, with its liveness checks;
//! - [`common`]: what both share — the timed event queue, the seed runner and its
//!   reports, the Grant glue, the host's messages and the Session's constants.

#[path = "simulation/common.rs"]
mod common;
#[path = "simulation/legacy.rs"]
mod legacy;
#[path = "simulation/streamable.rs"]
mod streamable;

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
