//! The Stream machine: one server-sent-event stream that must be kept open or resumed.
//!
//! ```text
//! idle ──Started──► connecting ──Connected──► streaming
//!   │                 │  Failed                 │ Ended / Failed
//!   │ Ended           ▼                         ▼
//!   └───────────► backing_off ◄─────────────────┘
//!                     │ RetryTimerFired ─► connecting
//! connecting ──Refused──► unsupported      any ──Closed──► closed
//! ```
//!
//! Two uses: the standalone GET stream a session may listen on, and the resumption
//! of a POST's response stream that broke before its answer (the reconnecting GET
//! carries `Last-Event-ID`). MCP 2025-11-25 transports §Resumability and
//! Redelivery: the client MUST respect the server's `retry` field before
//! reconnecting; otherwise delays come from a jittered exponential backoff. A
//! clean end of stream counts as a failure (never reconnect without a delay), and a
//! healthy period resets the backoff. A refusal (405: no GET stream; other 4xx)
//! is final: no retry storm against a server that said no.
//!
//! Driving contract: `handle_with_context(&event, &mut outbox)` with the current
//! time in the event, then perform the effects in order.

// statig generates the `State` and `Superstate` enums without docs.
#![allow(missing_docs)]

use crate::backoff::{Backoff, BackoffPolicy};
use statig::prelude::*;
use std::time::{Duration, Instant};

/// How long a stream must stay up to count as healthy and reset the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Inputs of the stream machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Open the stream for the first time.
    Started,
    /// The server answered the GET with a stream.
    Connected {
        /// When.
        now: Instant,
    },
    /// The server refused the GET with this status (4xx): do not retry.
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// Connecting failed (network error, 5xx, time-out).
    Failed {
        /// When.
        now: Instant,
    },
    /// The stream ended or broke after it was open (also: a POST stream broke and
    /// is to be resumed from `idle`).
    Ended {
        /// When.
        now: Instant,
        /// The last event id received, if any.
        last_event_id: Option<String>,
        /// The server's latest `retry:` hint, in milliseconds.
        retry_ms: Option<u64>,
    },
    /// The delay asked for by `ScheduleRetry` is over.
    RetryTimerFired,
    /// Stop for good (shutdown, session change, resumption done).
    Closed,
}

/// Outputs of the stream machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEffect {
    /// Send the GET, with `Last-Event-ID` when given.
    Open {
        /// Resume after this event.
        last_event_id: Option<String>,
    },
    /// Call back with `RetryTimerFired` after this delay.
    ScheduleRetry(Duration),
    /// Drop the connection, if any.
    Abort,
    /// No more attempts: the stream is gone (`refused` tells whether the server said no).
    GiveUp {
        /// True when the server refused the stream, false when attempts ran out.
        refused: bool,
    },
}

/// The effects of one step.
#[derive(Debug, Default)]
pub struct StreamOutbox(pub Vec<StreamEffect>);

/// Shared storage of the stream machine.
#[derive(Debug)]
pub struct StreamLink {
    /// The shape of the delays, kept to restart the schedule after a healthy period.
    policy: BackoffPolicy,
    /// Seed for the jitter, advanced at every restart so schedules differ.
    seed: u64,
    /// Delays still to come.
    backoff: Backoff,
    /// Resume point sent as `Last-Event-ID`.
    last_event_id: Option<String>,
    /// The server's `retry:` hint.
    retry_hint: Option<Duration>,
    /// When the current connection opened.
    connected_at: Option<Instant>,
    /// Failed attempts since the last successful connection.
    failures: u32,
}

impl StreamLink {
    /// A stream reconnecting with `policy`, jitter seeded with `seed`.
    pub fn new(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            seed,
            backoff: policy.schedule(seed),
            last_event_id: None,
            retry_hint: None,
            connected_at: None,
            failures: 0,
        }
    }

    /// The resume point.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Plan the next attempt, or give up.
    fn schedule_retry(&mut self, context: &mut StreamOutbox) -> Outcome<State> {
        let first = self.failures == 0;
        self.failures += 1;
        let Some(backoff) = self.backoff.next() else {
            context.0.push(StreamEffect::GiveUp { refused: false });
            return Transition(State::closed());
        };
        let delay = match self.retry_hint {
            // The server's `retry` is what the first reconnection waits, exactly.
            Some(hint) if first => hint,
            Some(hint) => hint.max(backoff),
            None => backoff,
        };
        context.0.push(StreamEffect::ScheduleRetry(delay));
        Transition(State::backing_off())
    }

    fn note_end(&mut self, now: Instant, last_event_id: &Option<String>, retry_ms: Option<u64>) {
        if last_event_id.is_some() {
            self.last_event_id = last_event_id.clone();
        }
        if let Some(ms) = retry_ms {
            self.retry_hint = Some(Duration::from_millis(ms));
        }
        if self
            .connected_at
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= HEALTHY_AFTER)
        {
            self.seed = self.seed.wrapping_add(1);
            self.backoff = self.policy.schedule(self.seed);
        }
    }
}

/// Silence detection for long-lived event streams (dead-peer detection without
/// pings). Servers that send keep-alive comments keep doing so at a steady pace;
/// once a few gaps have been seen, a silence of four times the longest of them
/// (at least 5 s, so a hiccup of a few seconds is ridden out) means the connection died silently — the VPN flap that leaves
/// no FIN and no RST. Before enough gaps are seen, only the body time-out applies.
#[derive(Debug, Clone, Default)]
pub struct SilenceWatch {
    /// When bytes last arrived.
    last: Option<Instant>,
    /// Gaps seen between arrivals.
    gaps: u32,
    /// The longest gap seen.
    longest: Duration,
}

impl SilenceWatch {
    /// Gaps to see before trusting the pace.
    const SAMPLES: u32 = 3;
    /// Never declare death sooner than this.
    const FLOOR: Duration = Duration::from_secs(5);

    /// Bytes arrived at `now`.
    pub fn on_bytes(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            self.longest = self.longest.max(gap);
            self.gaps += 1;
        }
        self.last = Some(now);
    }

    /// How long a silence may last before the stream counts as dead, if the pace is known.
    pub fn limit(&self) -> Option<Duration> {
        (self.gaps >= Self::SAMPLES).then(|| (self.longest * 4).max(Self::FLOOR))
    }
}

#[state_machine(
    initial = "State::idle()",
    state(derive(Debug, Clone, PartialEq, Eq)),
    superstate(derive(Debug))
)]
impl StreamLink {
    /// Not opened yet.
    #[state(superstate = "alive")]
    fn idle(&mut self, event: &StreamEvent, context: &mut StreamOutbox) -> Outcome<State> {
        match event {
            StreamEvent::Started => {
                context.0.push(StreamEffect::Open {
                    last_event_id: self.last_event_id.clone(),
                });
                Transition(State::connecting())
            }
            StreamEvent::Ended {
                now,
                last_event_id,
                retry_ms,
            } => {
                self.note_end(*now, last_event_id, *retry_ms);
                self.schedule_retry(context)
            }
            _ => Super,
        }
    }

    /// The GET is on its way.
    #[state(superstate = "alive")]
    fn connecting(&mut self, event: &StreamEvent, context: &mut StreamOutbox) -> Outcome<State> {
        match event {
            StreamEvent::Connected { now } => {
                self.connected_at = Some(*now);
                self.failures = 0;
                Transition(State::streaming())
            }
            StreamEvent::Refused { .. } => {
                context.0.push(StreamEffect::GiveUp { refused: true });
                Transition(State::unsupported())
            }
            StreamEvent::Failed { .. } => self.schedule_retry(context),
            _ => Super,
        }
    }

    /// Events are flowing.
    #[state(superstate = "alive")]
    fn streaming(&mut self, event: &StreamEvent, context: &mut StreamOutbox) -> Outcome<State> {
        match event {
            StreamEvent::Ended {
                now,
                last_event_id,
                retry_ms,
            } => {
                self.note_end(*now, last_event_id, *retry_ms);
                self.schedule_retry(context)
            }
            StreamEvent::Failed { now } => {
                self.note_end(*now, &None, None);
                self.schedule_retry(context)
            }
            _ => Super,
        }
    }

    /// Waiting before the next attempt.
    #[state(superstate = "alive")]
    fn backing_off(&mut self, event: &StreamEvent, context: &mut StreamOutbox) -> Outcome<State> {
        match event {
            StreamEvent::RetryTimerFired => {
                context.0.push(StreamEffect::Open {
                    last_event_id: self.last_event_id.clone(),
                });
                Transition(State::connecting())
            }
            _ => Super,
        }
    }

    /// Behaviour shared until the stream is closed or refused.
    #[superstate]
    fn alive(event: &StreamEvent, context: &mut StreamOutbox) -> Outcome<State> {
        match event {
            StreamEvent::Closed => {
                context.0.push(StreamEffect::Abort);
                Transition(State::closed())
            }
            _ => Handled,
        }
    }

    /// The server does not offer this stream.
    #[state]
    fn unsupported(event: &StreamEvent) -> Outcome<State> {
        let _ = event;
        Handled
    }

    /// Closed for good.
    #[state]
    fn closed(event: &StreamEvent) -> Outcome<State> {
        let _ = event;
        Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step(sm: &mut StateMachine<StreamLink>, e: StreamEvent) -> Vec<StreamEffect> {
        let mut out = StreamOutbox::default();
        sm.handle_with_context(&e, &mut out);
        out.0
    }

    #[test]
    fn silence_limit_follows_the_keepalive_pace() {
        let t0 = Instant::now();
        let mut w = SilenceWatch::default();
        assert_eq!(w.limit(), None);
        for i in 0..4 {
            w.on_bytes(t0 + Duration::from_secs(i));
        }
        assert_eq!(w.limit(), Some(Duration::from_secs(5)));
        w.on_bytes(t0 + Duration::from_secs(20));
        assert_eq!(w.limit(), Some(Duration::from_secs(68)), "17 s gap × 4");
        let mut fast = SilenceWatch::default();
        for i in 0..5 {
            fast.on_bytes(t0 + Duration::from_millis(10 * i));
        }
        assert_eq!(
            fast.limit(),
            Some(Duration::from_secs(5)),
            "never sooner than 5 s"
        );
    }

    #[test]
    fn refused_is_final() {
        let mut sm = StreamLink::new(BackoffPolicy::STREAM, 1).state_machine();
        assert_eq!(
            step(&mut sm, StreamEvent::Started),
            vec![StreamEffect::Open {
                last_event_id: None
            }]
        );
        assert_eq!(
            step(&mut sm, StreamEvent::Refused { status: 405 }),
            vec![StreamEffect::GiveUp { refused: true }]
        );
        assert!(step(&mut sm, StreamEvent::RetryTimerFired).is_empty());
        assert!(step(
            &mut sm,
            StreamEvent::Failed {
                now: Instant::now()
            }
        )
        .is_empty());
    }

    #[test]
    fn broken_post_stream_resumes_after_exactly_the_retry_hint() {
        let mut sm = StreamLink::new(BackoffPolicy::RESUME, 1).state_machine();
        let now = Instant::now();
        let e = step(
            &mut sm,
            StreamEvent::Ended {
                now,
                last_event_id: Some("0-1".into()),
                retry_ms: Some(500),
            },
        );
        assert_eq!(
            e,
            vec![StreamEffect::ScheduleRetry(Duration::from_millis(500))]
        );
        assert_eq!(
            step(&mut sm, StreamEvent::RetryTimerFired),
            vec![StreamEffect::Open {
                last_event_id: Some("0-1".into())
            }]
        );
    }

    #[test]
    fn clean_end_is_never_an_immediate_reconnect_and_attempts_are_bounded() {
        let mut sm = StreamLink::new(BackoffPolicy::RESUME, 3).state_machine();
        let now = Instant::now();
        step(&mut sm, StreamEvent::Started);
        let mut gave_up = false;
        for _ in 0..10 {
            let e = step(&mut sm, StreamEvent::Failed { now });
            match &e[..] {
                [StreamEffect::ScheduleRetry(d)] => {
                    assert!(*d >= Duration::from_millis(500));
                    step(&mut sm, StreamEvent::RetryTimerFired);
                }
                [StreamEffect::GiveUp { refused: false }] => {
                    gave_up = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(gave_up);
    }

    fn event() -> impl Strategy<Value = (u8, u64)> {
        (0u8..6, 0u64..30_000)
    }

    proptest! {
        /// Over any schedule: an Open is only ever emitted from idle or after a
        /// retry timer (never twice without a delay in between), every delay is at
        /// least the policy's minimum, and nothing happens after a refusal.
        #[test]
        fn never_reconnects_without_a_delay(events in proptest::collection::vec(event(), 0..100), seed in any::<u64>()) {
            let mut sm = StreamLink::new(BackoffPolicy::STREAM, seed).state_machine();
            let t0 = Instant::now();
            let mut opens_since_delay = 0;
            let mut refused = false;
            for (kind, ms) in events {
                let now = t0 + Duration::from_millis(ms);
                let e = match kind {
                    0 => StreamEvent::Started,
                    1 => StreamEvent::Connected { now },
                    2 => StreamEvent::Failed { now },
                    3 => StreamEvent::Ended { now, last_event_id: Some(ms.to_string()), retry_ms: None },
                    4 => StreamEvent::RetryTimerFired,
                    _ => StreamEvent::Refused { status: 405 },
                };
                let fired = matches!(e, StreamEvent::RetryTimerFired);
                let effects = step(&mut sm, e);
                if refused { prop_assert!(effects.is_empty()); }
                for eff in effects {
                    match eff {
                        StreamEffect::Open { .. } => {
                            opens_since_delay += 1;
                            prop_assert!(opens_since_delay == 1 || fired);
                        }
                        StreamEffect::ScheduleRetry(d) => {
                            prop_assert!(d >= BackoffPolicy::STREAM.min_delay);
                            opens_since_delay = 0;
                        }
                        StreamEffect::GiveUp { refused: r } => refused |= r,
                        StreamEffect::Abort => {}
                    }
                }
            }
        }
    }
}
