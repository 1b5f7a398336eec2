//! Liveness of the connection to the server. On the legacy (HTTP+SSE) transport every
//! answer comes on one event stream, so a stream that died silently (a VPN flap: no FIN,
//! no RST) swallows them; on either transport, a network that swallows everything makes
//! every request sent into it an error of unknown fate.
//!
//! - Before a request relies on a quiet stream ([`SilenceWatch::is_quiet`]), the Link
//!   holds it and the stream is checked with a ping ([`StreamCheck`]): bytes on the
//!   stream release the request; an accepted ping with no answer means the stream is
//!   dead, and the request goes on the next stream after the re-initialization.
//! - A POST that has no response after four times the usual time (1–5 s), or fails on
//!   the network, is a sign of trouble, and the connection is checked at once (a live
//!   server answers a legacy POST 202 at once; a Streamable HTTP POST may be a slow tool
//!   call, which costs one ping). Requests wait (held by the Link) during the check
//!   instead of going into a network that swallows them. On Streamable HTTP a check in
//!   which no ping got through abandons what is in flight and starts again; the waiting
//!   requests go as soon as a ping is answered (each still bounded by its time-out).
//! - Reopening the stream is bounded by time: an attempt that has not delivered its
//!   `endpoint` within four times the last successful open (1–10 s, doubling after each
//!   time-out) is abandoned and retried, so a GET that went into a blackhole does not
//!   hold the session once the network is back.

use super::{Pending, Session, LEGACY_STREAM};
use crate::messages::{ExchangeEnd, Origin};
use actix::prelude::*;
use bytes::Bytes;
use machines::jsonrpc::{self, IdKey};
use machines::link::{LinkEvent, Transport};
use machines::stream::{CheckStep, OpenTimer, SilenceWatch, StreamCheck, StreamEvent};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest an accepted request's answer is watched for (bounds the watch list).
const ANSWER_WATCH_LIMIT: Duration = Duration::from_secs(30);
/// The reserved id prefix of check pings.
fn check_prefix() -> String {
    format!("{}check-", jsonrpc::RESERVED_ID_PREFIX)
}

/// What a legacy stream's reader shares with the Session: when bytes last came, and
/// the keep-alive pace.
pub(super) type Pulse = Arc<Mutex<SilenceWatch>>;

/// Reads a pulse (a poisoned lock still holds valid timestamps).
pub(super) fn read_pulse<T>(pulse: &Pulse, f: impl FnOnce(&mut SilenceWatch) -> T) -> T {
    f(&mut pulse.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Something that must have happened by a deadline, or the connection is checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Watch {
    /// The POST of message `seq` (made under legacy connection `connection`) has a response.
    Post {
        /// The message.
        seq: u64,
        /// The legacy connection it went under.
        connection: Option<u64>,
    },
    /// The request `key`, accepted on the legacy stream, has its answer.
    Answer {
        /// The request.
        key: IdKey,
    },
    /// The replayed `initialize` with this id has its answer.
    Reinit {
        /// Its reserved id.
        id: String,
    },
}

/// Deadlines, soonest first.
pub(super) type Watches = BinaryHeap<Reverse<(Instant, Watch)>>;

/// A check in progress.
#[derive(Debug)]
pub(super) struct Check {
    /// Its number, in its pings' ids and timers.
    number: u64,
    /// The decisions.
    machine: StreamCheck,
    /// Pings sent: id and when the server accepted it.
    pings: Vec<(String, Option<Instant>)>,
}

/// Opening the legacy stream: the current attempt, and the time allowed to it.
#[derive(Debug, Default)]
pub(super) struct LegacyOpen {
    /// Attempts made, to tell a current attempt's timer from a stale one.
    attempt: u64,
    /// When the current attempt began.
    started: Option<Instant>,
    /// The time allowed (GET to `endpoint`), from what earlier attempts took.
    timer: OpenTimer,
}

impl Session {
    /// Whether a request about to be sent should wait for the legacy stream to be
    /// confirmed alive (it is up, quiet, and not being checked already).
    pub(super) fn stream_is_quiet(&self, now: Instant) -> bool {
        self.live_connection.is_some()
            && self.check.is_none()
            && read_pulse(&self.pulse, |w| w.is_quiet(now))
    }

    /// Watches the legacy POST of message `seq`: no response in the usual time is a
    /// sign of trouble.
    pub(super) fn watch_post(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let after = self.post_time.late_after();
        let connection = self.live_connection;
        self.watch(after, Watch::Post { seq, connection }, ctx);
    }

    /// Whether the transport in use is the legacy one.
    fn is_legacy(&self) -> bool {
        self.link.transport() == Some(Transport::Legacy)
    }

    /// A request was accepted on the legacy stream: if its answer is still owed once the
    /// stream has gone quiet, the stream may have died after the 202; check it.
    fn watch_answer(&mut self, key: IdKey, ctx: &mut Context<Self>) {
        // Past 30 s the keep-alive silence limit (four keep-alive intervals) catches it.
        let after = read_pulse(&self.pulse, |w| w.quiet_after()).min(ANSWER_WATCH_LIMIT);
        self.watch(after, Watch::Answer { key }, ctx);
    }

    /// The replayed `initialize` was sent (Streamable HTTP) or accepted (legacy): its
    /// answer must follow in the usual time, or the connection is checked (legacy: the
    /// stream may have died just after its `endpoint`; Streamable HTTP: the replay may
    /// have gone into a network that swallows everything).
    pub(super) fn watch_reinit(&mut self, ctx: &mut Context<Self>) {
        if let Some(id) = self.reinit_id.clone() {
            self.watch(self.post_time.late_after(), Watch::Reinit { id }, ctx);
        }
    }

    /// Adds a deadline. One timer serves them all (a timer per request would cost every
    /// message a walk over the actor's spawned futures).
    fn watch(&mut self, after: Duration, what: Watch, ctx: &mut Context<Self>) {
        let due = Instant::now() + after;
        self.watches.push(Reverse((due, what)));
        if self
            .watches
            .peek()
            .is_some_and(|Reverse((first, _))| *first == due)
        {
            self.arm_sweep(due, ctx);
        }
    }

    /// Makes the sweep run at `due` (unless it runs sooner already).
    fn arm_sweep(&mut self, due: Instant, ctx: &mut Context<Self>) {
        if self.sweep_at.is_some_and(|at| at <= due) {
            return;
        }
        self.sweep_at = Some(due);
        ctx.run_later(
            due.saturating_duration_since(Instant::now()),
            move |act, ctx| {
                if act.sweep_at == Some(due) {
                    act.sweep_at = None;
                    act.sweep(ctx);
                }
            },
        );
    }

    /// The deadlines that passed: whatever is still unanswered is a sign of trouble.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while let Some(Reverse((due, _))) = self.watches.peek() {
            if *due > now {
                let next = *due;
                self.arm_sweep(next, ctx);
                return;
            }
            let Some(Reverse((_, what))) = self.watches.pop() else {
                return;
            };
            match what {
                Watch::Post { seq, connection } => {
                    if self.post_tasks.contains_key(&seq) && self.live_connection == connection {
                        self.suspect("a POST got no response in the usual time", ctx);
                    }
                }
                Watch::Answer { key } => {
                    if self.awaiting.contains_key(&key) && self.stream_is_quiet(now) {
                        self.suspect("an answer is overdue on a quiet event stream", ctx);
                    }
                }
                Watch::Reinit { id } => {
                    if self.reinit_id.as_deref() == Some(id.as_str()) {
                        self.suspect(
                            "no answer to the replayed initialize in the usual time",
                            ctx,
                        );
                    }
                }
            }
        }
    }

    /// A POST ended: learn the usual time to an answer, and treat a network failure as
    /// a sign of trouble.
    pub(super) fn post_ended(
        &mut self,
        pending: &Pending,
        end: &ExchangeEnd,
        ctx: &mut Context<Self>,
    ) {
        match end {
            ExchangeEnd::Accepted | ExchangeEnd::Done { .. } => {
                if let (true, ExchangeEnd::Accepted, Some(key)) =
                    (self.is_legacy(), end, pending.id_key.clone())
                {
                    self.watch_answer(key, ctx);
                }
                if let Some(sent) = pending.posted_at {
                    self.post_time.observe(sent.elapsed());
                }
            }
            ExchangeEnd::Failed { .. }
                if pending.generation == self.live_connection.unwrap_or(0) =>
            {
                self.suspect("a POST failed on the network", ctx)
            }
            _ => {}
        }
    }

    /// Something suggests the network had trouble: check the stream, unless a check
    /// runs already or there is no stream to check.
    fn suspect(&mut self, why: &str, ctx: &mut Context<Self>) {
        let connected = match self.is_legacy() {
            true => self.live_connection.is_some(),
            false => self.link.established(),
        };
        if self.check.is_some() || !connected || self.exiting {
            return;
        }
        tracing::info!("{why}; checking that the server is reachable");
        self.dispatch(LinkEvent::StreamQuiet, ctx);
    }

    /// The Link asked for a check of the legacy stream.
    pub(super) fn start_check(&mut self, ctx: &mut Context<Self>) {
        self.checks += 1;
        let number = self.checks;
        self.check = Some(Check {
            number,
            machine: StreamCheck::new(Instant::now(), StreamCheck::answer_wait(self.check_lag)),
            pings: Vec::new(),
        });
        self.poll_check(number, ctx);
    }

    /// Moves check `number` on: bytes since it began confirm the stream; otherwise
    /// ping, wait or declare the stream dead, as the [`StreamCheck`] says.
    pub(super) fn poll_check(&mut self, number: u64, ctx: &mut Context<Self>) {
        if self.exiting {
            self.check = None;
            return;
        }
        let legacy = self.is_legacy();
        loop {
            let Some(check) = self.check.as_mut().filter(|c| c.number == number) else {
                return;
            };
            let started = check.machine.started();
            if legacy && read_pulse(&self.pulse, |w| w.last_bytes()).is_some_and(|t| t > started) {
                self.stream_confirmed(ctx);
                return;
            }
            let now = Instant::now();
            match check.machine.poll(now) {
                CheckStep::Ping => {
                    let id = format!("{}{number}-{}", check_prefix(), check.pings.len() + 1);
                    check.pings.push((id.clone(), None));
                    let bytes = jsonrpc::request(&id, "ping", None);
                    let (request, endpoint) = self.post(Bytes::from(bytes), true);
                    self.spawn_exchange(Origin::Check { number }, request, endpoint, false, ctx);
                }
                CheckStep::Wait(until) => {
                    ctx.run_later(until.saturating_duration_since(now), move |act, ctx| {
                        act.poll_check(number, ctx)
                    });
                    return;
                }
                CheckStep::Dead if legacy => {
                    let waited = now.saturating_duration_since(started).as_secs_f64();
                    self.stream_dead(
                        format!("no sign of life within {waited:.1} s of a ping"),
                        ctx,
                    );
                    return;
                }
                CheckStep::Dead => {
                    let waited = now.saturating_duration_since(started).as_secs_f64();
                    tracing::warn!("no answer from the server for {waited:.1} s; still trying");
                    self.check = None;
                    self.dispatch(LinkEvent::PeerSilent, ctx);
                    self.start_check(ctx);
                    return;
                }
            }
        }
    }

    /// The POST of one of check `number`'s pings ended.
    pub(super) fn check_ping_ended(
        &mut self,
        number: u64,
        end: ExchangeEnd,
        ctx: &mut Context<Self>,
    ) {
        let legacy = self.is_legacy();
        let Some(check) = self.check.as_mut().filter(|c| c.number == number) else {
            return;
        };
        match end {
            // Streamable HTTP: any HTTP answer shows the server is reachable again.
            ExchangeEnd::Failed { .. } | ExchangeEnd::Unreachable { .. } if !legacy => {
                tracing::debug!("check ping failed: {end:?}");
            }
            _ if !legacy => self.stream_confirmed(ctx),
            ExchangeEnd::Accepted | ExchangeEnd::Done { .. } => {
                let now = Instant::now();
                check.machine.on_accepted(now);
                if let Some(ping) = check.pings.iter_mut().find(|(_, at)| at.is_none()) {
                    ping.1 = Some(now);
                }
                self.poll_check(number, ctx);
            }
            // The endpoint is gone: so is the stream that went with it.
            ExchangeEnd::Expired => {
                self.stream_dead("the server no longer knows the session".into(), ctx)
            }
            other => tracing::debug!("stream check ping failed: {other:?}"),
        }
    }

    /// An answer with a reserved id arrived: if it is a check ping's, the stream lives.
    pub(super) fn check_answered(&mut self, key: &IdKey, ctx: &mut Context<Self>) {
        let IdKey::Str(id) = key else {
            return;
        };
        if !id.starts_with(&check_prefix()) {
            return;
        }
        if let Some(accepted) = self
            .check
            .as_ref()
            .and_then(|c| c.pings.iter().find(|(p, _)| p == id))
            .and_then(|(_, at)| *at)
        {
            let lag = accepted.elapsed();
            self.check_lag = Some(self.check_lag.map_or(lag, |l| l.max(lag)));
        }
        if self.check.is_some() {
            self.stream_confirmed(ctx);
        }
    }

    /// The checked connection is alive: the held messages go.
    fn stream_confirmed(&mut self, ctx: &mut Context<Self>) {
        self.check = None;
        tracing::debug!("the connection to the server is alive");
        self.dispatch(LinkEvent::StreamConfirmed, ctx);
    }

    /// The legacy stream is dead although it never said so: drop it, then react as to
    /// any broken stream (fail what it owed, reconnect, re-initialize).
    fn stream_dead(&mut self, why: String, ctx: &mut Context<Self>) {
        self.check = None;
        if let Some(handle) = self
            .streams
            .get_mut(&LEGACY_STREAM)
            .and_then(|t| t.task.take())
        {
            ctx.cancel_future(handle);
        }
        self.legacy_stream_ended(
            ExchangeEnd::Done {
                last_event_id: None,
                retry_ms: None,
                broken: Some(why),
            },
            ctx,
        );
    }

    /// A new legacy stream replaces the old one: a fresh pulse, no check.
    pub(super) fn new_legacy_pulse(&mut self) -> Pulse {
        self.check = None;
        self.pulse = Pulse::default();
        self.pulse.clone()
    }

    /// An attempt to open the legacy stream begins: bound it in time.
    pub(super) fn legacy_open_started(&mut self, ctx: &mut Context<Self>) {
        self.legacy_open.attempt += 1;
        self.legacy_open.started = Some(Instant::now());
        let attempt = self.legacy_open.attempt;
        let limit = self.legacy_open.timer.limit();
        ctx.run_later(limit, move |act, ctx| {
            let opening = act.legacy_open.started.is_some() && act.live_connection.is_none();
            if act.legacy_open.attempt != attempt || !opening {
                return;
            }
            act.legacy_open.timer.timed_out();
            let reason = format!(
                "the server's event stream did not open within {:.1} s",
                limit.as_secs_f64()
            );
            tracing::info!("{reason}");
            if let Some(handle) = act
                .streams
                .get_mut(&LEGACY_STREAM)
                .and_then(|t| t.task.take())
            {
                ctx.cancel_future(handle);
            }
            act.dispatch(LinkEvent::LegacyFailed { reason }, ctx);
            act.drive_stream(
                LEGACY_STREAM,
                StreamEvent::Failed {
                    now: Instant::now(),
                },
                ctx,
            );
        });
    }

    /// The attempt to open the legacy stream ended without an `endpoint`: its time-out
    /// no longer applies.
    pub(super) fn legacy_open_ended(&mut self) {
        self.legacy_open.started = None;
    }

    /// The legacy stream delivered its `endpoint`: note how long opening took.
    pub(super) fn legacy_opened(&mut self) {
        if let Some(started) = self.legacy_open.started.take() {
            self.legacy_open.timer.opened(started.elapsed());
        }
    }
}
