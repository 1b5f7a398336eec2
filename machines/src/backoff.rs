//! Reconnection delays: jittered exponential backoff from `backon`, seeded by
//! the caller so that the same seed gives the same schedule.
//!
//! `backon` replaces the card's `backoff` crate, which RustSec marks unmaintained
//! (RUSTSEC-2025-0012) and names `backon` as its successor.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// The shape of a backoff schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Growth factor between attempts.
    pub factor: f32,
    /// Give up after this many attempts (`None`: never).
    pub max_attempts: Option<usize>,
}

impl BackoffPolicy {
    /// Reconnecting the standalone GET stream: 1 s growing ×1.5 up to 30 s, for ever
    /// (the TypeScript SDK's defaults, without its give-up after 2 retries).
    pub const STREAM: BackoffPolicy = BackoffPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
        factor: 1.5,
        max_attempts: None,
    };

    /// Reopening the legacy (HTTP+SSE) event stream: every answer comes on it, so the
    /// first attempt goes almost at once (0.1–0.2 s), then doubling up to 1 s (1–2 s
    /// with jitter): requests wait for it, and once the network is back the next
    /// attempt is never far (one GET every few seconds costs a down server nothing).
    pub const LEGACY: BackoffPolicy = BackoffPolicy {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        factor: 2.0,
        max_attempts: None,
    };

    /// Reaching a server that refused connections: quick first retries, then at most
    /// every 10 s, for as long as the requests' deadlines allow.
    pub const RECONNECT: BackoffPolicy = BackoffPolicy {
        min_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(10),
        factor: 2.0,
        max_attempts: None,
    };

    /// Resuming a broken POST response stream: a few quick attempts, then the
    /// request fails and the host is told.
    pub const RESUME: BackoffPolicy = BackoffPolicy {
        min_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(5),
        factor: 2.0,
        max_attempts: Some(5),
    };

    /// The iterator of delays for this policy. Jitter adds up to 100 % of each delay.
    pub fn schedule(&self, seed: u64) -> Backoff {
        let mut b = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_jitter()
            .with_jitter_seed(seed);
        b = match self.max_attempts {
            Some(n) => b.with_max_times(n),
            None => b.without_max_times(),
        };
        Backoff { inner: b.build() }
    }
}

/// A running schedule of delays.
#[derive(Debug)]
pub struct Backoff {
    /// backon's exponential iterator.
    inner: backon::ExponentialBackoff,
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.inner.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule_and_bounds_hold() {
        let a: Vec<_> = BackoffPolicy::RESUME.schedule(7).collect();
        let b: Vec<_> = BackoffPolicy::RESUME.schedule(7).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        for d in &a {
            assert!(
                *d >= Duration::from_millis(500) && *d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
        let s: Vec<_> = BackoffPolicy::STREAM.schedule(1).take(50).collect();
        assert_eq!(s.len(), 50);
        assert!(s.iter().all(|d| *d <= Duration::from_secs(60)));
    }
}
