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
//! - Reopening the legacy stream is bounded by time: an attempt that has not delivered
//!   its `endpoint` within four times the last successful open (1–10 s, doubling after
//!   each time-out) is abandoned and retried, so a GET that went into a blackhole does
//!   not hold the session once the network is back.
//! - `--keep-alive`: a ping every interval; one unanswered by the next tick means the
//!   connection went silent.
//!
//! [`SilenceWatch::is_quiet`]: crate::stream::SilenceWatch::is_quiet

use super::exchange::{Ending, Role};
use super::{
    Engine, ExchangeId, LogEvent, NetworkError, RequestError, Stage, StreamRef, Suspicion, Timer,
};
use crate::jsonrpc::{IdKey, RESERVED_ID_PREFIX};
use crate::link::LinkEvent;
use crate::stream::{CheckStep, OpenTimer, StreamCheck, StreamEvent};
use std::time::{Duration, Instant};

/// After an outage, how long an exchange that showed no sign of life since it began
/// has to show one before its connection is presumed dead.
pub(super) const PROBATION: Duration = Duration::from_secs(2);

/// The longest wait before an accepted request's answer is first looked for.
const ANSWER_WATCH_LIMIT: Duration = Duration::from_secs(30);

/// The reserved id prefix of check pings.
fn check_prefix() -> String {
    format!("{RESERVED_ID_PREFIX}check-")
}

/// Something that must have happened by a deadline, or the connection is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Watch {
    /// The POST of message `seq` on `exchange` (under legacy connection `connection`) has a response.
    Post {
        /// The message.
        seq: u64,
        /// Its POST.
        exchange: ExchangeId,
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

/// A check in progress.
#[derive(Debug)]
pub(super) struct Check {
    /// Its number, in its pings' ids and timers.
    number: u64,
    /// The decisions.
    machine: StreamCheck,
    /// Pings sent: id, when the server accepted it, and its exchange.
    pings: Vec<(String, Option<Instant>, ExchangeId)>,
    /// A ping failed on the network: the outage was real.
    failed: bool,
}

/// Opening the legacy stream: the current attempt, and the time allowed to it.
#[derive(Debug, Default)]
pub(super) struct LegacyOpen {
    /// Attempts made, to tell a current attempt's timer from a stale one.
    attempt: u64,
    /// When the current attempt began.
    pub(super) started: Option<Instant>,
    /// The time allowed (GET to `endpoint`), from what earlier attempts took.
    timer: OpenTimer,
}

impl Engine {
    /// Whether a request about to be sent should wait for the legacy stream to be
    /// confirmed alive (it is up, quiet, and not being checked already).
    pub(super) fn stream_is_quiet(&self, now: Instant) -> bool {
        self.live_connection.is_some()
            && self.check.is_none()
            && !self.host_backlog
            && self.pulse.is_quiet(now)
    }

    /// Watches the POST of message `seq`: no response in the usual time is a sign of trouble.
    pub(super) fn watch_post(&mut self, seq: u64, exchange: ExchangeId, now: Instant) {
        let connection = self.live_connection;
        let at = now + self.post_time.late_after();
        self.set_timer(
            at,
            Timer::Watch(Watch::Post {
                seq,
                exchange,
                connection,
            }),
        );
    }

    /// A request was accepted on the legacy stream: if its answer is still owed once the
    /// stream has gone quiet, the stream may have died after the 202; check it.
    fn watch_answer(&mut self, key: IdKey, now: Instant) {
        let after = self.pulse.quiet_after().min(ANSWER_WATCH_LIMIT);
        self.set_timer(now + after, Timer::Watch(Watch::Answer { key }));
    }

    /// The replayed `initialize` was sent (Streamable HTTP) or accepted (legacy): its
    /// answer must follow in the usual time, or the connection is checked.
    pub(super) fn watch_reinit(&mut self, now: Instant) {
        if let Some(id) = self.reinit_id.clone() {
            let at = now + self.post_time.late_after();
            self.set_timer(at, Timer::Watch(Watch::Reinit { id }));
        }
    }

    /// A watch's deadline passed: whatever is still unanswered is a sign of trouble.
    pub(super) fn watch_due(&mut self, watch: Watch, now: Instant) {
        match watch {
            Watch::Post {
                seq,
                exchange,
                connection,
            } => {
                let still_posted = matches!(
                    self.messages.get(&seq).map(|e| e.stage),
                    Some(Stage::Posted { exchange: e, .. }) if e == exchange
                );
                if still_posted && self.live_connection == connection {
                    self.suspect(Suspicion::PostLate, now);
                }
            }
            Watch::Answer { key } => {
                if !self.owed.contains_key(&key) || self.live_connection.is_none() {
                    return;
                }
                if self.stream_is_quiet(now) {
                    self.suspect(Suspicion::AnswerOverdue, now);
                }
                // Bytes came since (or a check runs): watch on, until the answer comes
                // or the stream goes quiet with it still owed (found by the simulation: a
                // stream that died just after its last bytes swallowed the answer, and
                // nothing looked again until the request time-out).
                let quiet_at = self.pulse.last_bytes().unwrap_or(now) + self.pulse.quiet_after();
                let at = quiet_at.max(now + Duration::from_millis(100));
                self.set_timer(at, Timer::Watch(Watch::Answer { key }));
            }
            Watch::Reinit { id } => {
                if self.reinit_id.as_deref() == Some(id.as_str()) {
                    self.suspect(Suspicion::ReinitUnanswered, now);
                }
            }
        }
    }

    /// A POST of a host message ended: learn the usual time to an answer, and treat a
    /// network failure as a sign of trouble.
    pub(super) fn learn_from_post(
        &mut self,
        posted_at: Instant,
        connection: u64,
        key: Option<&IdKey>,
        ending: &Ending,
        now: Instant,
    ) {
        match ending {
            Ending::Accepted | Ending::Done { .. } => {
                if let (true, Ending::Accepted, Some(key)) = (self.is_legacy(), ending, key) {
                    self.watch_answer(key.clone(), now);
                }
                self.post_time
                    .observe(now.saturating_duration_since(posted_at));
            }
            Ending::Failed(e)
                if !matches!(e, NetworkError::Connect(_))
                    && connection == self.live_connection.unwrap_or(0) =>
            {
                self.suspect(Suspicion::PostFailed, now)
            }
            _ => {}
        }
    }

    /// Something suggests the network had trouble: check the connection, unless a
    /// check runs already or there is nothing to check.
    fn suspect(&mut self, why: Suspicion, now: Instant) {
        let connected = match self.is_legacy() {
            true => self.live_connection.is_some(),
            false => self.link.established(),
        };
        if self.check.is_some() || !connected || self.exiting || self.host_backlog {
            return;
        }
        self.log(LogEvent::CheckStarted(why));
        self.dispatch(LinkEvent::StreamQuiet, now);
    }

    /// The Link asked for a check.
    pub(super) fn start_check(&mut self, now: Instant) {
        self.checks += 1;
        let number = self.checks;
        self.check = Some(Check {
            number,
            machine: StreamCheck::new(now, StreamCheck::answer_wait(self.check_lag)),
            pings: Vec::new(),
            failed: false,
        });
        self.poll_check(number, now);
    }

    /// Moves check `number` on: bytes since it began confirm the legacy stream;
    /// otherwise ping, wait or declare the connection dead, as the [`StreamCheck`] says.
    pub(super) fn poll_check(&mut self, number: u64, now: Instant) {
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
            if legacy && self.pulse.last_bytes().is_some_and(|t| t > started) {
                self.stream_confirmed(None, now);
                return;
            }
            match check.machine.poll(now) {
                CheckStep::Ping => {
                    let ping = check.pings.len();
                    let id = format!("{}{number}-{}", check_prefix(), ping + 1);
                    let exchange = self.post_ping(&id, Role::Check { number, ping }, now);
                    if let Some(check) = self.check.as_mut() {
                        check.pings.push((id, None, exchange));
                    }
                }
                CheckStep::Wait(until) => {
                    self.set_timer(until, Timer::CheckPoll(number));
                    return;
                }
                CheckStep::Dead if legacy => {
                    let waited = now.saturating_duration_since(started).as_secs_f64();
                    self.stream_dead(
                        format!("no sign of life within {waited:.1} s of a ping"),
                        now,
                    );
                    return;
                }
                CheckStep::Dead => {
                    self.log(LogEvent::StillSilent(
                        now.saturating_duration_since(started),
                    ));
                    self.check = None;
                    self.peer_silent(RequestError::Silent, now);
                    self.start_check(now);
                    return;
                }
            }
        }
    }

    /// The POST of check `number`'s ping `ping` ended.
    pub(super) fn check_ping_ended(
        &mut self,
        number: u64,
        ping: usize,
        ending: Ending,
        now: Instant,
    ) {
        let legacy = self.is_legacy();
        let Some(check) = self.check.as_mut().filter(|c| c.number == number) else {
            return;
        };
        match ending {
            // Streamable HTTP: any HTTP answer shows the server is reachable again.
            Ending::Failed(e) if !legacy => {
                check.failed = true;
                self.log(LogEvent::CheckPingFailed(e))
            }
            _ if !legacy => self.stream_confirmed(Some(ping), now),
            Ending::Accepted | Ending::Done { .. } => {
                check.machine.on_accepted(now);
                if let Some(ping) = check.pings.iter_mut().find(|(_, at, _)| at.is_none()) {
                    ping.1 = Some(now);
                }
                self.poll_check(number, now);
            }
            // The endpoint is gone: so is the stream that went with it.
            Ending::Expired => {
                self.stream_dead("the server no longer knows the session".into(), now)
            }
            Ending::Failed(e) => self.log(LogEvent::CheckPingFailed(e)),
            _ => {}
        }
    }

    /// An answer with a reserved id arrived: if it is a check ping's, the connection lives.
    pub(super) fn check_answered(&mut self, id: &str, now: Instant) {
        if !id.starts_with(&check_prefix()) {
            return;
        }
        let ping = self
            .check
            .as_ref()
            .and_then(|c| c.pings.iter().position(|(p, _, _)| p == id));
        if let Some(accepted) = self
            .check
            .as_ref()
            .zip(ping)
            .and_then(|(c, k)| c.pings[k].1)
        {
            let lag = now.saturating_duration_since(accepted);
            self.check_lag = Some(self.check_lag.map_or(lag, |l| l.max(lag)));
        }
        if self.check.is_some() {
            self.stream_confirmed(ping, now);
        }
    }

    /// The connection is dead for `why`: the Link abandons what is in flight on it.
    fn peer_silent(&mut self, why: RequestError, now: Instant) {
        self.silence = why;
        self.dispatch(LinkEvent::PeerSilent, now);
    }

    /// The checked connection is alive (`ping`: which ping of the check showed it): the
    /// held messages go. If the network really was out — a ping failed, or an earlier
    /// ping still has no answer — the exchanges that showed no sign of life since the
    /// check began get [`PROBATION`] to show one (bytes held up by a stall come at once
    /// when it lifts); those that do not are on connections that died in the outage.
    fn stream_confirmed(&mut self, ping: Option<usize>, now: Instant) {
        let Some(check) = self.check.take() else {
            return;
        };
        let outage = ping.is_some_and(|k| {
            check.failed
                || check.pings[..k.min(check.pings.len())]
                    .iter()
                    .any(|(_, _, ex)| self.exchanges.contains_key(ex))
        });
        self.log(LogEvent::ConnectionConfirmed);
        self.dispatch(LinkEvent::StreamConfirmed, now);
        if ping.is_none() {
            return; // legacy: the stream itself showed life
        }
        // Without a sign of an outage, only what is cheap to give up on, or surely
        // dead, is put on probation: a response stream with an event id (resumed), and
        // a request with no response head from a server that sends heads at once (a
        // middlebox that keeps TCP alive may hold a dead path). A plain JSON request
        // without an answer may be a slow tool call: only TCP can tell.
        let since = check.machine.started();
        let streams_answers = self.streams_answers;
        let suspects: Vec<ExchangeId> = self
            .exchanges
            .iter()
            .filter(|(_, ex)| ex.progress_at < since && ex.may_be_on_probation())
            .filter(|(_, ex)| outage || ex.resumable() || (streams_answers && ex.awaiting_head()))
            .map(|(id, _)| *id)
            .collect();
        for id in suspects {
            self.set_timer(now + PROBATION, Timer::Probation(id, since));
        }
    }

    /// The legacy stream is dead although it never said so: drop it, then react as to
    /// any broken stream (fail what it owed, reconnect, re-initialize).
    fn stream_dead(&mut self, why: String, now: Instant) {
        self.check = None;
        self.log(LogEvent::StreamDead(why.clone()));
        if let Some(id) = self
            .streams
            .get_mut(&StreamRef::Legacy)
            .and_then(|s| s.exchange.take())
        {
            self.abort(id);
        }
        self.legacy_stream_ended(
            Ending::Done {
                last_event_id: None,
                retry_ms: None,
                broken: Some(why),
            },
            now,
        );
    }

    /// An attempt to open the legacy stream begins: bound it in time.
    pub(super) fn legacy_open_started(&mut self, now: Instant) {
        self.legacy_open.attempt += 1;
        self.legacy_open.started = Some(now);
        let attempt = self.legacy_open.attempt;
        let limit = self.legacy_open.timer.limit();
        self.set_timer(now + limit, Timer::LegacyOpen(attempt));
    }

    /// An attempt to open the legacy stream has had its time.
    pub(super) fn legacy_open_due(&mut self, attempt: u64, now: Instant) {
        let opening = self.legacy_open.started.is_some() && self.live_connection.is_none();
        if self.legacy_open.attempt != attempt || !opening {
            return;
        }
        let limit = self.legacy_open.timer.limit();
        self.legacy_open.timer.timed_out();
        self.legacy_open.started = None;
        self.log(LogEvent::LegacyOpenTimedOut(limit));
        if let Some(id) = self
            .streams
            .get_mut(&StreamRef::Legacy)
            .and_then(|s| s.exchange.take())
        {
            self.abort(id);
        }
        let error = RequestError::StreamOpenTimedOut(limit);
        self.dispatch(LinkEvent::LegacyFailed { error }, now);
        self.drive_stream(StreamRef::Legacy, StreamEvent::Failed { now }, now);
    }

    /// The legacy stream delivered its `endpoint`: note how long opening took.
    pub(super) fn legacy_opened(&mut self, now: Instant) {
        if let Some(started) = self.legacy_open.started.take() {
            self.legacy_open
                .timer
                .opened(now.saturating_duration_since(started));
        }
    }

    /// One keep-alive tick: an unanswered ping means the peer went silent;
    /// otherwise send the next one (reserved id; its answer is swallowed).
    pub(super) fn keep_alive(&mut self, now: Instant) {
        if let Some(interval) = self.config.ping_interval {
            self.set_timer(now + interval, Timer::KeepAlive);
        }
        if self.exiting || !self.link.established() {
            return;
        }
        if self.ping_outstanding.take().is_some() {
            self.log(LogEvent::KeepAliveUnanswered);
            self.peer_silent(RequestError::KeepAliveSilent, now);
            return;
        }
        self.pings += 1;
        let id = format!("{RESERVED_ID_PREFIX}ping-{}", self.pings);
        self.post_ping(&id, Role::Ping, now);
        self.ping_outstanding = Some(id);
    }
}
