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

/// No reconnection ever goes sooner than this, whatever the server's `retry:` says.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);

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
            // The server's `retry` is what the first reconnection waits, exactly, but never
            // less than a floor: `retry: 0` must not make a reconnect loop.
            Some(hint) if first => hint.max(MIN_RECONNECT_DELAY),
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
/// once a few gaps between keep-alives have been seen, a silence of four times the
/// longest of them (at least 5 s, so a hiccup of a few seconds is ridden out) means
/// the connection died silently — the VPN flap that leaves no FIN and no RST.
/// Messages do not set the pace: a server without keep-alives may be silent for as
/// long as nobody asks it anything, so for it only the body time-out applies, and
/// [`SilenceWatch::is_quiet`] tells when to confirm the stream with a ping
/// ([`StreamCheck`]) before relying on it.
#[derive(Debug, Clone, Default)]
pub struct SilenceWatch {
    /// When bytes last arrived (anything: messages, comments).
    last: Option<Instant>,
    /// When the last keep-alive arrived.
    last_keepalive: Option<Instant>,
    /// Gaps seen between keep-alives.
    gaps: u32,
    /// The longest gap seen between keep-alives.
    longest: Duration,
}

impl SilenceWatch {
    /// Gaps to see before trusting the pace.
    const SAMPLES: u32 = 3;
    /// Never declare death sooner than this.
    const FLOOR: Duration = Duration::from_secs(5);
    /// A stream without keep-alives is confirmed before use after this long without a byte.
    pub const QUIET_UNPACED: Duration = Duration::from_secs(5);
    /// A stream with keep-alives is quiet after three of its gaps, but never sooner than this.
    const QUIET_FLOOR: Duration = Duration::from_secs(1);

    /// Bytes arrived at `now`.
    pub fn on_bytes(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// A keep-alive (a comment, or an event that carries no message) arrived at `now`.
    pub fn on_keepalive(&mut self, now: Instant) {
        self.on_bytes(now);
        if let Some(last) = self.last_keepalive {
            let gap = now.saturating_duration_since(last);
            self.longest = self.longest.max(gap);
            self.gaps += 1;
        }
        self.last_keepalive = Some(now);
    }

    /// The keep-alive pace (the longest gap), once enough gaps were seen.
    fn pace(&self) -> Option<Duration> {
        (self.gaps >= Self::SAMPLES).then_some(self.longest)
    }

    /// How long a silence may last before the stream counts as dead, if the pace is known.
    pub fn limit(&self) -> Option<Duration> {
        self.pace().map(|pace| (pace * 4).max(Self::FLOOR))
    }

    /// When bytes last arrived.
    pub fn last_bytes(&self) -> Option<Instant> {
        self.last
    }

    /// Whether the stream has been silent long enough at `now` that it should be
    /// confirmed alive before a request relies on it: three keep-alive gaps (at least
    /// 1 s) when the server sends keep-alives, [`Self::QUIET_UNPACED`] otherwise. A
    /// stream that sent nothing yet is still opening, not quiet.
    pub fn is_quiet(&self, now: Instant) -> bool {
        let Some(last) = self.last else {
            return false;
        };
        now.saturating_duration_since(last) >= self.quiet_after()
    }

    /// How long without a byte makes the stream quiet (see [`Self::is_quiet`]).
    pub fn quiet_after(&self) -> Duration {
        match self.pace() {
            Some(pace) => (pace * 3).max(Self::QUIET_FLOOR),
            None => Self::QUIET_UNPACED,
        }
    }
}

/// How long the server usually takes to respond to a POST (smoothed as TCP smooths
/// round trips, so one stall does not stick), and so when a response is late: four
/// times the usual time, within 1–5 s. A late response is a sign of trouble.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseTime {
    /// The smoothed time, once one response was seen.
    smoothed: Option<Duration>,
}

impl ResponseTime {
    /// A response is never late sooner than this.
    pub const LATE_FLOOR: Duration = Duration::from_secs(1);
    /// A response is always late after this.
    pub const LATE_CEILING: Duration = Duration::from_secs(5);

    /// A response took `took`.
    pub fn observe(&mut self, took: Duration) {
        self.smoothed = Some(match self.smoothed {
            None => took,
            Some(old) => old.mul_f64(0.875) + took.mul_f64(0.125),
        });
    }

    /// How long a response may take before it is late.
    pub fn late_after(&self) -> Duration {
        self.smoothed
            .map(|t| t * 4)
            .unwrap_or_default()
            .clamp(Self::LATE_FLOOR, Self::LATE_CEILING)
    }
}

/// The time allowed to (re)open an event stream, up to its first event: the first
/// attempt gets [`OpenTimer::FIRST`]; later ones four times what the last successful
/// open took (1–3 s), doubling after each attempt that timed out, up to 3 s. So a GET
/// that went into a blackhole is abandoned soon — the one made just before the network
/// came back holds the reconnection for at most 3 s — and a slow network still gets the
/// time it needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenTimer {
    /// How long the last successful open took.
    last: Option<Duration>,
    /// Attempts in a row that timed out.
    timeouts: u32,
}

impl OpenTimer {
    /// The time allowed to the first open.
    pub const FIRST: Duration = Duration::from_secs(10);
    /// A reopen is never cut shorter than this.
    const FLOOR: Duration = Duration::from_secs(1);
    /// Nor allowed longer than this.
    const CEILING: Duration = Duration::from_secs(3);

    /// The time allowed to the next attempt.
    pub fn limit(&self) -> Duration {
        match self.last {
            None => Self::FIRST,
            Some(took) => (took * 4)
                .clamp(Self::FLOOR, Self::CEILING)
                .saturating_mul(1 << self.timeouts.min(4))
                .min(Self::CEILING),
        }
    }

    /// An attempt opened the stream in `took`.
    pub fn opened(&mut self, took: Duration) {
        self.last = Some(took);
        self.timeouts = 0;
    }

    /// An attempt ran out of time.
    pub fn timed_out(&mut self) {
        self.timeouts += 1;
    }
}

/// Confirming that a quiet event stream is alive before a request relies on it (the
/// legacy HTTP+SSE transport, where every answer comes on that one stream): the proxy
/// POSTs a ping whose answer comes on the stream.
///
/// - Any byte on the stream after the check began proves it alive (the caller looks).
/// - A ping the server accepted (202) with no answer within the answer wait proves
///   it dead: the server wrote to a connection that no longer reaches the proxy.
/// - While no ping gets through (the network itself is down), another goes every
///   [`StreamCheck::REPING`], at most [`StreamCheck::MAX_PINGS`]; when none was
///   accepted after [`StreamCheck::GIVE_UP`], the stream counts as dead too.
///
/// A request waits (held by the Link) while its stream is checked, so one that would
/// have been lost on a dead stream is sent on the next one instead (invariant 3).
#[derive(Debug, Clone)]
pub struct StreamCheck {
    /// When the check began.
    started: Instant,
    /// Pings sent so far.
    pings: u32,
    /// When the first ping was accepted.
    accepted: Option<Instant>,
    /// How long an accepted ping's answer may take.
    answer_wait: Duration,
}

/// What to do next in a [`StreamCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStep {
    /// Send a ping now (then poll again).
    Ping,
    /// Nothing until this moment; poll again then.
    Wait(Instant),
    /// The stream is dead.
    Dead,
}

impl StreamCheck {
    /// Between pings while none was accepted.
    pub const REPING: Duration = Duration::from_millis(500);
    /// At most this many pings per check.
    pub const MAX_PINGS: u32 = 10;
    /// With no ping accepted by then, the stream counts as dead.
    pub const GIVE_UP: Duration = Duration::from_secs(8);
    /// The answer wait is four times the slowest answer seen, within these bounds.
    const ANSWER_FLOOR: Duration = Duration::from_secs(1);
    /// See [`Self::ANSWER_FLOOR`].
    const ANSWER_CEILING: Duration = Duration::from_secs(5);

    /// How long an accepted ping's answer may take, given the slowest seen so far
    /// (from the 202 to the answer on the stream).
    pub fn answer_wait(slowest: Option<Duration>) -> Duration {
        slowest
            .map(|s| s * 4)
            .unwrap_or_default()
            .clamp(Self::ANSWER_FLOOR, Self::ANSWER_CEILING)
    }

    /// A check beginning at `now`; its first [`StreamCheck::poll`] asks for a ping.
    pub fn new(now: Instant, answer_wait: Duration) -> Self {
        Self {
            started: now,
            pings: 0,
            accepted: None,
            answer_wait,
        }
    }

    /// When the check began: bytes after this prove the stream alive.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The server accepted one of the check's pings at `now`.
    pub fn on_accepted(&mut self, now: Instant) {
        self.accepted.get_or_insert(now);
    }

    /// What to do at `now` (the stream delivered nothing since the check began).
    pub fn poll(&mut self, now: Instant) -> CheckStep {
        if let Some(accepted) = self.accepted {
            let deadline = accepted + self.answer_wait;
            return if now >= deadline {
                CheckStep::Dead
            } else {
                CheckStep::Wait(deadline)
            };
        }
        let give_up = self.started + Self::GIVE_UP;
        if now >= give_up {
            return CheckStep::Dead;
        }
        if self.pings < Self::MAX_PINGS {
            let next = self.started + Self::REPING * self.pings;
            if now >= next {
                self.pings += 1;
                return CheckStep::Ping;
            }
            return CheckStep::Wait(next.min(give_up));
        }
        CheckStep::Wait(give_up)
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
            w.on_keepalive(t0 + Duration::from_secs(i));
        }
        assert_eq!(w.limit(), Some(Duration::from_secs(5)));
        w.on_keepalive(t0 + Duration::from_secs(20));
        assert_eq!(w.limit(), Some(Duration::from_secs(68)), "17 s gap × 4");
        let mut fast = SilenceWatch::default();
        for i in 0..5 {
            fast.on_keepalive(t0 + Duration::from_millis(10 * i));
        }
        assert_eq!(
            fast.limit(),
            Some(Duration::from_secs(5)),
            "never sooner than 5 s"
        );
    }

    #[test]
    fn messages_do_not_set_the_pace_and_quiet_follows_keepalives() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // A server without keep-alives: three quick answers, then idle. Not dead, ever;
        // quiet (worth a ping before the next request) after 5 s.
        let mut w = SilenceWatch::default();
        assert!(!w.is_quiet(t0 + s(60)), "nothing yet: still opening");
        for i in 0..4 {
            w.on_bytes(t0 + Duration::from_millis(10 * i));
        }
        assert_eq!(w.limit(), None, "message gaps are not a keep-alive pace");
        assert!(!w.is_quiet(t0 + s(4)));
        assert!(w.is_quiet(t0 + s(6)));
        // Keep-alives every second: quiet after 3 s without a byte, dead after 5 s.
        let mut k = SilenceWatch::default();
        for i in 0..5 {
            k.on_keepalive(t0 + s(i));
        }
        assert_eq!(k.last_bytes(), Some(t0 + s(4)));
        assert!(!k.is_quiet(t0 + Duration::from_millis(6_900)));
        assert!(k.is_quiet(t0 + s(7)));
        assert_eq!(k.limit(), Some(s(5)));
    }

    #[test]
    fn a_check_pings_again_until_one_is_accepted_then_waits_for_its_answer() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = StreamCheck::new(t0, StreamCheck::answer_wait(None));
        assert_eq!(c.started(), t0);
        assert_eq!(c.poll(t0), CheckStep::Ping);
        assert_eq!(c.poll(t0), CheckStep::Wait(t0 + ms(500)));
        assert_eq!(c.poll(t0 + ms(500)), CheckStep::Ping);
        assert_eq!(c.poll(t0 + ms(600)), CheckStep::Wait(t0 + ms(1000)));
        c.on_accepted(t0 + ms(700));
        c.on_accepted(t0 + ms(900)); // a second acceptance does not move the deadline
        assert_eq!(c.poll(t0 + ms(800)), CheckStep::Wait(t0 + ms(1700)));
        assert_eq!(c.poll(t0 + ms(1700)), CheckStep::Dead);
    }

    #[test]
    fn a_check_with_nothing_accepted_gives_up_after_a_bounded_number_of_pings() {
        let t0 = Instant::now();
        let mut c = StreamCheck::new(t0, Duration::from_secs(1));
        let mut pings = 0;
        let mut now = t0;
        for _ in 0..100 {
            match c.poll(now) {
                CheckStep::Ping => pings += 1,
                CheckStep::Wait(until) => {
                    assert!(until > now, "a wait always moves time forward");
                    now = until;
                }
                CheckStep::Dead => break,
            }
        }
        assert_eq!(pings, StreamCheck::MAX_PINGS);
        assert_eq!(now, t0 + StreamCheck::GIVE_UP);
        assert_eq!(c.poll(now), CheckStep::Dead);
    }

    #[test]
    fn the_answer_wait_scales_with_the_slowest_answer_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(StreamCheck::answer_wait(None), ms(1000));
        assert_eq!(StreamCheck::answer_wait(Some(ms(20))), ms(1000));
        assert_eq!(StreamCheck::answer_wait(Some(ms(600))), ms(2400));
        assert_eq!(StreamCheck::answer_wait(Some(ms(9000))), ms(5000));
    }

    #[test]
    fn a_response_is_late_after_four_times_the_usual_time_within_bounds() {
        let ms = Duration::from_millis;
        let mut t = ResponseTime::default();
        assert_eq!(t.late_after(), ms(1000), "nothing seen yet");
        t.observe(ms(20));
        assert_eq!(t.late_after(), ms(1000));
        t.observe(ms(3020));
        assert_eq!(
            t.late_after(),
            ms(1580),
            "one stall moves the estimate an eighth"
        );
        for _ in 0..100 {
            t.observe(ms(4000));
        }
        assert_eq!(t.late_after(), ms(5000));
    }

    #[test]
    fn reopening_is_bounded_by_what_opening_took() {
        let ms = Duration::from_millis;
        let mut open = OpenTimer::default();
        assert_eq!(open.limit(), OpenTimer::FIRST, "no history yet");
        open.opened(ms(20));
        assert_eq!(open.limit(), ms(1000), "a fast server: 1 s");
        open.opened(ms(300));
        assert_eq!(open.limit(), ms(1200));
        open.timed_out();
        assert_eq!(open.limit(), ms(2400), "doubling after a time-out");
        for _ in 0..8 {
            open.timed_out();
        }
        assert_eq!(open.limit(), ms(3_000), "never more than 3 s");
        open.opened(ms(20));
        assert_eq!(open.limit(), ms(1000), "a success starts over");
    }

    #[test]
    fn retry_zero_never_means_reconnecting_at_once() {
        let mut sm = StreamLink::new(BackoffPolicy::LEGACY, 1).state_machine();
        step(&mut sm, StreamEvent::Started);
        let now = Instant::now();
        step(&mut sm, StreamEvent::Connected { now });
        let out = step(
            &mut sm,
            StreamEvent::Ended {
                now,
                last_event_id: None,
                retry_ms: Some(0),
            },
        );
        assert_eq!(out, vec![StreamEffect::ScheduleRetry(MIN_RECONNECT_DELAY)]);
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

    /// The delay before the next reopening when a stream that failed five times in a
    /// row (each within 100 ms of connecting) connects again and ends after `up_for`.
    fn delay_after_a_stream_up_for(up_for: Duration, seed: u64) -> Duration {
        let mut sm = StreamLink::new(BackoffPolicy::STREAM, seed).state_machine();
        let mut now = Instant::now();
        assert!(matches!(
            &step(&mut sm, StreamEvent::Started)[..],
            [StreamEffect::Open { .. }]
        ));
        for _ in 0..5 {
            step(&mut sm, StreamEvent::Connected { now });
            now += Duration::from_millis(100);
            let e = step(&mut sm, StreamEvent::Failed { now });
            let [StreamEffect::ScheduleRetry(d)] = e[..] else {
                panic!("{e:?}")
            };
            now += d;
            assert!(matches!(
                &step(&mut sm, StreamEvent::RetryTimerFired)[..],
                [StreamEffect::Open { .. }]
            ));
        }
        step(&mut sm, StreamEvent::Connected { now });
        let end = StreamEvent::Ended {
            now: now + up_for,
            last_event_id: None,
            retry_ms: None,
        };
        match step(&mut sm, end)[..] {
            [StreamEffect::ScheduleRetry(d)] => d,
            ref other => panic!("{other:?}"),
        }
    }

    /// README: the streams' backoff is "reset after 10 s of health". After five quick
    /// failures the delay has grown past 1.5^5 × the minimum (jitter only adds); a stream
    /// that then stayed up for [`HEALTHY_AFTER`] starts again from the first delay (the
    /// minimum plus at most as much jitter), one that stayed up a little less does not.
    #[test]
    fn ten_seconds_of_health_reset_the_backoff() {
        let min = BackoffPolicy::STREAM.min_delay;
        let grown = min.mul_f32(BackoffPolicy::STREAM.factor.powi(5));
        for seed in 0..20 {
            let healthy = delay_after_a_stream_up_for(HEALTHY_AFTER, seed);
            assert!(
                healthy >= min && healthy <= min * 2,
                "seed {seed}: {healthy:?} after health"
            );
            let almost = HEALTHY_AFTER - Duration::from_millis(1);
            let unhealthy = delay_after_a_stream_up_for(almost, seed);
            assert!(
                unhealthy >= grown,
                "seed {seed}: {unhealthy:?} after {almost:?} up"
            );
        }
    }

    fn event() -> impl Strategy<Value = (u8, u64)> {
        (0u8..6, 0u64..30_000)
    }

    proptest! {
        /// Over any schedule: every Open after the first is preceded by a
        /// ScheduleRetry whose RetryTimerFired came in between (never a reconnect
        /// without a delay, not even `[ScheduleRetry, Open]` in one step), every
        /// delay is at least the policy's minimum, and nothing happens after a refusal.
        #[test]
        fn never_reconnects_without_a_delay(events in proptest::collection::vec(event(), 0..100), seed in any::<u64>()) {
            let mut sm = StreamLink::new(BackoffPolicy::STREAM, seed).state_machine();
            let t0 = Instant::now();
            let mut opened = false;
            // A delay was asked for since the last Open, and whether its timer fired since.
            let mut scheduled = false;
            let mut timer_fired = false;
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
                if matches!(e, StreamEvent::RetryTimerFired) && scheduled {
                    timer_fired = true;
                }
                let effects = step(&mut sm, e.clone());
                if refused { prop_assert!(effects.is_empty()); }
                for eff in effects {
                    match eff {
                        StreamEffect::Open { .. } => {
                            prop_assert!(
                                !opened || (scheduled && timer_fired),
                                "reopened on {:?} without a delay (scheduled {}, timer fired {})",
                                e, scheduled, timer_fired
                            );
                            opened = true;
                            scheduled = false;
                            timer_fired = false;
                        }
                        StreamEffect::ScheduleRetry(d) => {
                            prop_assert!(d >= BackoffPolicy::STREAM.min_delay);
                            scheduled = true;
                            timer_fired = false;
                        }
                        StreamEffect::GiveUp { refused: r } => refused |= r,
                        StreamEffect::Abort => {}
                    }
                }
            }
        }
    }
}
