//! Session: the link to the remote MCP server over Streamable HTTP
//! (MCP 2025-03-26 … 2025-11-25, basic/transports §Streamable HTTP).
//!
//! Every message from the host becomes one POST (both `Accept` types, the
//! session id and the negotiated `MCP-Protocol-Version` once known). The answer
//! is a JSON body, an SSE stream, or 202. Server messages are handed to the
//! Bridge in the order they arrive; server→client requests and notifications
//! travel the same way, and the host's answers go back as POSTs.
//!
//! Decisions are the machines': [`Link`] says what happens to each message and
//! when the session is re-initialized (404 with a session id), [`StreamLink`]
//! says when the standalone GET stream and broken response streams are
//! (re)opened and with which `Last-Event-ID`. This actor only performs them:
//! `dispatch(event)` → machine → effects → `perform(effect)`.
//!
//! Each HTTP exchange runs as a future owned by this actor; it reports back
//! with [`ServerMessage`] (one per message, in order) and then
//! [`ExchangeEnded`], so the actor's state changes only in its own handlers.

use crate::http::describe_error;
use crate::messages::{
    AuthFailed, ExchangeEnd, ExchangeEnded, Flush, Forward, Inbound, LegacyEndpoint, NeedToken,
    Origin, RequestFailed, ServerMessage, Shutdown, TokenReady, TokenWorked,
};
use actix::prelude::*;
use bytes::Bytes;
use machines::auth::challenge::BearerChallenge;
use machines::auth::grant::Need;
use machines::backoff::BackoffPolicy;
use machines::jsonrpc::{self, IdKey, Incoming, Kind};
use machines::link::{Link, LinkEffect, LinkEvent, LinkOutbox, Strategy, Transport};
use machines::sse::SseParser;
use machines::stream::{ResponseTime, StreamEffect, StreamEvent, StreamLink, StreamOutbox};
use machines::transport::{self, GetOutcome, PostOutcome};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use url::Url;

mod liveness;
use liveness::{read_pulse, Check, LegacyOpen, Pulse, Watches};

/// The standalone GET stream's handle among the streams.
const GET_STREAM: u64 = 0;
/// The legacy (HTTP+SSE) event stream's handle among the streams.
const LEGACY_STREAM: u64 = u64::MAX;
/// How long a GET for an event stream may wait for its response headers.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the DELETE at shutdown.
const DELETE_TIMEOUT: Duration = Duration::from_millis(800);
/// Whatever happens, the process ends this long after shutdown began (with the
/// Bridge's drain of at most 0.7 s, within 2 s of stdin closing).
const EXIT_DEADLINE: Duration = Duration::from_millis(1200);
/// Longest wait for `notifications/initialized` to be delivered before held messages go anyway.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body is read to look for a JSON-RPC error in it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What the Session needs to know.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The MCP endpoint.
    pub url: Url,
    /// `--header` values, already expanded, sent on every request.
    pub headers: HeaderMap,
    /// Longest wait for response headers (`--headers-timeout`; `None`: no limit).
    pub headers_timeout: Option<Duration>,
    /// Largest message accepted from the server, in bytes.
    pub max_message_bytes: usize,
    /// Seed for the reconnection jitter.
    pub seed: u64,
    /// `--transport`.
    pub strategy: Strategy,
    /// The file remembering which transport this server speaks (`<key>_transport.json`).
    pub transport_memory: Option<PathBuf>,
    /// `--keep-alive` / `--ping-interval`: send a ping this often; one unanswered by the
    /// next tick means the connection went silent.
    pub ping_interval: Option<Duration>,
}

/// A host message the Session still holds.
#[derive(Debug)]
struct Pending {
    /// The body (cheap to clone for a re-send).
    bytes: Bytes,
    /// Request, notification or response.
    kind: Kind,
    /// For requests: the id, to report failures against.
    id_key: Option<IdKey>,
    /// Whether it was already re-sent after a re-initialization.
    retried: bool,
    /// The legacy connection it was posted under (if that one died, the answer will not come).
    generation: u64,
    /// When its POST was sent.
    posted_at: Option<Instant>,
}

/// A GET stream being kept open or resumed.
struct Tracked {
    /// Its reconnect machine.
    machine: StateMachine<StreamLink>,
    /// The exchange in progress, to abort it.
    task: Option<SpawnHandle>,
    /// For a resumption: the host request whose answer it waits for.
    awaiting: Option<IdKey>,
}

/// The Session actor.
pub struct Session {
    /// Settings.
    config: SessionConfig,
    /// The HTTP client.
    http: reqwest::Client,
    /// Where server messages go.
    bridge: Recipient<Inbound>,
    /// Where failures of host requests are reported.
    failures: Recipient<RequestFailed>,
    /// Flushed before the process exits (none for the diagnostic client).
    stdout: Option<Recipient<Flush>>,
    /// The session machine.
    link: StateMachine<Link>,
    /// Next message handle.
    next_seq: u64,
    /// Messages the link has not released yet (held during a re-initialization).
    unsent: HashMap<u64, Pending>,
    /// Messages whose POST is in progress (kept for a re-send after a 404).
    posted: HashMap<u64, Pending>,
    /// Host requests still owed an answer, by id.
    awaiting: HashMap<IdKey, u64>,
    /// The host's `initialize` as sent, replayed when the session expires.
    initialize: Option<Bytes>,
    /// The id of the host's `initialize` while its answer is awaited.
    host_initialize: Option<IdKey>,
    /// The reserved id of the replayed `initialize` in progress.
    reinit_id: Option<String>,
    /// The handle of the host's `notifications/initialized` while its POST is in progress.
    initialized_seq: Option<u64>,
    /// GET streams: the standalone one and resumptions.
    streams: HashMap<u64, Tracked>,
    /// Next stream handle.
    next_stream: u64,
    /// The server refused the GET stream once: it is not asked again.
    get_refused: bool,
    /// Shutdown has begun.
    exiting: bool,
    /// Counts legacy streams opened; messages and timers of an older one are stale.
    legacy_generation: u64,
    /// The legacy connection whose `endpoint` arrived and which is still up; requests
    /// accepted under another one will not be answered.
    live_connection: Option<u64>,
    /// Counts legacy connections that delivered an endpoint.
    connections: u64,
    /// Where requests for a token go (none: the server is used without sign-in).
    authorizer: Option<(Recipient<NeedToken>, Recipient<TokenWorked>)>,
    /// `Authorization: Bearer …` for every request (marked sensitive).
    authorization: Option<HeaderValue>,
    /// A request already succeeded with the current token (reported once).
    token_confirmed: bool,
    /// The latest 401/403 and its challenge, for the next token request.
    last_need: Option<(Need, BearerChallenge)>,
    /// POST exchanges in progress, to drop them when the connection is declared dead.
    post_tasks: HashMap<u64, SpawnHandle>,
    /// The keep-alive ping awaiting its answer: its id and when it was sent.
    ping_outstanding: Option<String>,
    /// Pings sent, for unique reserved ids.
    pings: u64,
    /// The current legacy stream's pulse (when bytes last came, the keep-alive pace).
    pulse: Pulse,
    /// The check of the quiet legacy stream in progress.
    check: Option<Check>,
    /// Checks begun, for unique ping ids and to tell stale timers.
    checks: u64,
    /// The slowest answer to a check ping seen (from its 202 to the answer).
    check_lag: Option<Duration>,
    /// Opening the legacy stream: attempts and how long they took.
    legacy_open: LegacyOpen,
    /// How long POSTs usually take to get a response (when one is late).
    post_time: ResponseTime,
    /// The POST of the replayed `initialize` in progress.
    reinit_task: Option<SpawnHandle>,
    /// Replays of `initialize` sent, to tell the current one's end from an older one's.
    reinits: u64,
    /// Deadlines by which a response or an answer must have come (liveness.rs).
    watches: Watches,
    /// When the one timer that sweeps `watches` fires.
    sweep_at: Option<Instant>,
}

impl Session {
    /// A session to `config.url`.
    pub fn new(
        config: SessionConfig,
        http: reqwest::Client,
        bridge: Recipient<Inbound>,
        failures: Recipient<RequestFailed>,
        stdout: Option<Recipient<Flush>>,
    ) -> Self {
        let remembered = crate::store::read_transport(config.transport_memory.as_deref());
        let link = Link::new(config.strategy, remembered)
            .with_seed(config.seed)
            .state_machine();
        Self {
            config,
            http,
            bridge,
            failures,
            stdout,
            link,
            next_seq: 0,
            unsent: HashMap::new(),
            posted: HashMap::new(),
            awaiting: HashMap::new(),
            initialize: None,
            host_initialize: None,
            reinit_id: None,
            initialized_seq: None,
            streams: HashMap::new(),
            next_stream: GET_STREAM + 1,
            get_refused: false,
            exiting: false,
            legacy_generation: 0,
            live_connection: None,
            connections: 0,
            authorizer: None,
            authorization: None,
            token_confirmed: false,
            last_need: None,
            post_tasks: HashMap::new(),
            ping_outstanding: None,
            pings: 0,
            pulse: Pulse::default(),
            check: None,
            checks: 0,
            check_lag: None,
            legacy_open: LegacyOpen::default(),
            post_time: ResponseTime::default(),
            reinit_task: None,
            reinits: 0,
            watches: Watches::new(),
            sweep_at: None,
        }
    }

    /// Sign in through this Authorizer when the server asks for credentials.
    pub fn with_authorizer(
        mut self,
        need: Recipient<NeedToken>,
        worked: Recipient<TokenWorked>,
    ) -> Self {
        self.authorizer = Some((need, worked));
        self
    }

    /// Add `Authorization` (MCP authorization §Token Requirements: on every request).
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    fn dispatch(&mut self, event: LinkEvent, ctx: &mut Context<Self>) {
        let mut out = LinkOutbox::default();
        self.link.handle_with_context(&event, &mut out);
        if !self.link.checking() {
            // The Link no longer waits for a check (the stream was replaced, the session ended).
            self.check = None;
        }
        for effect in out.0 {
            self.perform(effect, ctx);
        }
    }

    fn perform(&mut self, effect: LinkEffect, ctx: &mut Context<Self>) {
        match effect {
            LinkEffect::Post { seq, retry } => {
                let Some(mut pending) = self.unsent.remove(&seq) else {
                    return;
                };
                pending.retried = retry;
                pending.generation = self.live_connection.unwrap_or(0);
                pending.posted_at = Some(Instant::now());
                let (request, with_session) = self.post(pending.bytes.clone(), true);
                self.posted.insert(seq, pending);
                let handle =
                    self.spawn_exchange(Origin::Post { seq }, request, with_session, false, ctx);
                self.post_tasks.insert(seq, handle);
                self.watch_post(seq, ctx);
            }
            LinkEffect::Fail { seq, reason } => {
                if let Some(pending) = self
                    .unsent
                    .remove(&seq)
                    .or_else(|| self.posted.remove(&seq))
                {
                    self.fail(&pending, reason);
                }
            }
            LinkEffect::PostReinitialize { id } => {
                let replay = self.initialize.as_ref().and_then(|bytes| {
                    let message = jsonrpc::Message::parse(bytes.to_vec()).ok()?;
                    jsonrpc::with_id(&message, &id)
                });
                match replay {
                    Some(bytes) => {
                        tracing::info!("re-initializing the session with the host's initialize");
                        self.reinit_id = Some(id);
                        let (request, _) = self.post(Bytes::from(bytes), false);
                        // A replay replaces the one before (which may sit on a dead connection).
                        if let Some(old) = self.reinit_task.take() {
                            ctx.cancel_future(old);
                        }
                        self.reinits += 1;
                        let origin = Origin::Reinit {
                            number: self.reinits,
                        };
                        let task = self.spawn_exchange(origin, request, false, false, ctx);
                        self.reinit_task = Some(task);
                        if self.link.transport() == Some(Transport::Streamable) {
                            // Its answer is its response: watch it as any POST.
                            self.watch_reinit(ctx);
                        }
                    }
                    None => self.dispatch(
                        LinkEvent::ReinitFailed {
                            reason: "no initialize to replay".into(),
                        },
                        ctx,
                    ),
                }
            }
            LinkEffect::PostInitialized => {
                let bytes =
                    jsonrpc::notification("notifications/initialized", &serde_json::json!({}));
                let (request, with_session) = self.post(Bytes::from(bytes), true);
                self.spawn_exchange(Origin::Own, request, with_session, false, ctx);
                self.confirm_deadline(ctx);
            }
            LinkEffect::OpenGetStream => {
                if self.get_refused || self.streams.contains_key(&GET_STREAM) {
                    return;
                }
                let machine =
                    StreamLink::new(BackoffPolicy::STREAM, self.config.seed).state_machine();
                self.streams.insert(
                    GET_STREAM,
                    Tracked {
                        machine,
                        task: None,
                        awaiting: None,
                    },
                );
                self.drive_stream(GET_STREAM, StreamEvent::Started, ctx);
            }
            LinkEffect::CloseGetStream => {
                self.drive_stream(GET_STREAM, StreamEvent::Closed, ctx);
                self.streams.remove(&GET_STREAM);
            }
            LinkEffect::DeleteSession => self.delete_then_exit(ctx),
            LinkEffect::FailAccepted { reason } => {
                self.fail_accepted(&reason);
            }
            LinkEffect::OpenLegacyStream => {
                self.legacy_generation += 1;
                self.live_connection = None;
                if let Some(old) = self.streams.remove(&LEGACY_STREAM).and_then(|t| t.task) {
                    ctx.cancel_future(old);
                }
                let seed = self.config.seed.wrapping_add(self.legacy_generation);
                let machine = StreamLink::new(BackoffPolicy::LEGACY, seed).state_machine();
                self.streams.insert(
                    LEGACY_STREAM,
                    Tracked {
                        machine,
                        task: None,
                        awaiting: None,
                    },
                );
                tracing::info!("opening the server's event stream (legacy HTTP+SSE transport)");
                self.drive_stream(LEGACY_STREAM, StreamEvent::Started, ctx);
            }
            LinkEffect::CloseLegacyStream => {
                self.drive_stream(LEGACY_STREAM, StreamEvent::Closed, ctx);
                self.streams.remove(&LEGACY_STREAM);
                self.live_connection = None;
            }
            LinkEffect::CheckStream => self.start_check(ctx),
            LinkEffect::ScheduleRetry(delay) => {
                tracing::info!(
                    "the server is unreachable; trying again in {:.1} s",
                    delay.as_secs_f64()
                );
                ctx.run_later(delay, |act, ctx| {
                    act.dispatch(LinkEvent::RetryTimerFired, ctx)
                });
            }
            LinkEffect::AbandonInFlight { reason } => {
                tracing::warn!("{reason}");
                for (seq, handle) in std::mem::take(&mut self.post_tasks) {
                    ctx.cancel_future(handle);
                    if let Some(pending) = self.posted.remove(&seq) {
                        self.fail(&pending, reason.clone());
                    }
                }
                let resuming: Vec<u64> = self
                    .streams
                    .iter()
                    .filter(|(_, t)| t.awaiting.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                for id in resuming {
                    self.drive_stream(id, StreamEvent::Closed, ctx);
                    if let Some(key) = self.streams.remove(&id).and_then(|t| t.awaiting) {
                        self.fail_key(key, reason.clone());
                    }
                }
                if self.link.transport() == Some(Transport::Legacy) {
                    // Answers of requests accepted on the dead stream will not come either.
                    self.fail_accepted(&reason);
                }
            }
            LinkEffect::Discard { seq } => {
                self.unsent.remove(&seq);
            }
            LinkEffect::RequestToken => match (&self.authorizer, self.last_need.clone()) {
                (Some((need, _)), Some((what, challenge))) => need.do_send(NeedToken {
                    need: what,
                    challenge,
                }),
                _ => self.dispatch(
                    LinkEvent::AuthFailed {
                        reason: "the server requires authorization (HTTP 401)".into(),
                    },
                    ctx,
                ),
            },
            LinkEffect::RememberTransport(transport) => {
                if let Some(path) = &self.config.transport_memory {
                    crate::store::write_transport(path, transport);
                }
            }
            LinkEffect::ForgetTransport => {
                if let Some(path) = &self.config.transport_memory {
                    crate::store::forget_transport(path);
                }
            }
        }
    }

    /// Build a POST of `bytes` on the current transport; with `with_session`, the
    /// Streamable HTTP session headers are added. The second value tells whether
    /// a 404 means "session gone" (a session id was sent, or a legacy endpoint).
    fn post(&self, bytes: Bytes, with_session: bool) -> (reqwest::RequestBuilder, bool) {
        let legacy = self.link.transport() == Some(Transport::Legacy);
        let target = match self.link.endpoint().filter(|_| legacy) {
            Some(endpoint) => endpoint.to_owned(),
            None => self.config.url.to_string(),
        };
        let mut request = self
            .authorize(self.http.post(target))
            .headers(self.config.headers.clone())
            .header(ACCEPT, transport::POST_ACCEPT)
            .header(CONTENT_TYPE, "application/json");
        if legacy {
            // The endpoint names the session; a 404 there means it is gone.
            return (request.body(bytes), true);
        }
        let mut sent_session = false;
        if with_session {
            (request, sent_session) = self.session_headers(request);
        }
        (request.body(bytes), sent_session)
    }

    fn session_headers(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> (reqwest::RequestBuilder, bool) {
        let mut sent_session = false;
        if let Some(id) = self
            .link
            .session_id()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            request = request.header(transport::SESSION_HEADER, id);
            sent_session = true;
        }
        if let Some(v) = self
            .link
            .protocol_version()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            request = request.header(transport::VERSION_HEADER, v);
        }
        (request, sent_session)
    }

    fn spawn_exchange(
        &mut self,
        origin: Origin,
        request: reqwest::RequestBuilder,
        sent_session: bool,
        is_get: bool,
        ctx: &mut Context<Self>,
    ) -> SpawnHandle {
        let exchange = Exchange {
            origin,
            session: ctx.address(),
            max: self.config.max_message_bytes,
            headers_timeout: self.config.headers_timeout,
            sent_session,
            is_get,
            legacy: None,
            pulse: Pulse::default(),
        };
        ctx.spawn(exchange.run(request).into_actor(self))
    }

    /// Held messages are not held for ever behind a slow `notifications/initialized`.
    fn confirm_deadline(&self, ctx: &mut Context<Self>) {
        ctx.run_later(CONFIRM_TIMEOUT, |act, ctx| {
            act.dispatch(LinkEvent::InitializedDelivered, ctx)
        });
    }

    fn fail(&mut self, pending: &Pending, reason: String) {
        match (&pending.kind, &pending.id_key) {
            (Kind::Request, Some(key)) => {
                self.awaiting.remove(key);
                self.failures.do_send(RequestFailed {
                    id_key: key.clone(),
                    reason,
                });
            }
            _ => tracing::warn!("a message to the server was lost: {reason}"),
        }
    }

    /// Fail the requests the server accepted and has not answered: neither held
    /// nor being posted, their answers were to come on a stream that is gone.
    fn fail_accepted(&mut self, reason: &str) {
        let accepted: Vec<IdKey> = self
            .awaiting
            .iter()
            .filter(|(_, seq)| !self.unsent.contains_key(seq) && !self.posted.contains_key(seq))
            .map(|(key, _)| key.clone())
            .collect();
        for key in accepted {
            self.fail_key(key, reason.to_owned());
        }
    }

    fn fail_key(&mut self, key: IdKey, reason: String) {
        if self.awaiting.remove(&key).is_some() {
            self.failures.do_send(RequestFailed {
                id_key: key,
                reason,
            });
        }
    }

    fn drive_stream(&mut self, id: u64, event: StreamEvent, ctx: &mut Context<Self>) {
        let Some(tracked) = self.streams.get_mut(&id) else {
            return;
        };
        let mut out = StreamOutbox::default();
        tracked.machine.handle_with_context(&event, &mut out);
        for effect in out.0 {
            match effect {
                StreamEffect::Open { .. } if id == LEGACY_STREAM => {
                    // MCP 2024-11-05 §HTTP with SSE: GET the server URL for the event stream.
                    let request = self
                        .authorize(self.http.get(self.config.url.clone()))
                        .headers(self.config.headers.clone())
                        .header(ACCEPT, transport::GET_ACCEPT);
                    let exchange = Exchange {
                        origin: Origin::Get { stream: id },
                        session: ctx.address(),
                        max: self.config.max_message_bytes,
                        headers_timeout: self.config.headers_timeout,
                        sent_session: false,
                        is_get: true,
                        legacy: Some((self.legacy_generation, self.config.url.clone())),
                        pulse: self.new_legacy_pulse(),
                    };
                    self.legacy_open_started(ctx);
                    let handle = ctx.spawn(exchange.run(request).into_actor(self));
                    if let Some(t) = self.streams.get_mut(&id) {
                        t.task = Some(handle);
                    }
                }
                StreamEffect::Open { last_event_id } => {
                    let mut request = self
                        .authorize(self.http.get(self.config.url.clone()))
                        .headers(self.config.headers.clone());
                    request = request.header(ACCEPT, transport::GET_ACCEPT);
                    let (mut request, sent_session) = self.session_headers(request);
                    if let Some(last) = last_event_id
                        .as_deref()
                        .and_then(|s| HeaderValue::from_str(s).ok())
                    {
                        request = request.header("last-event-id", last);
                    }
                    tracing::debug!(
                        stream = id,
                        resuming = last_event_id.is_some(),
                        "opening GET stream"
                    );
                    let handle = self.spawn_exchange(
                        Origin::Get { stream: id },
                        request,
                        sent_session,
                        true,
                        ctx,
                    );
                    if let Some(t) = self.streams.get_mut(&id) {
                        t.task = Some(handle);
                    }
                }
                StreamEffect::ScheduleRetry(delay) => {
                    tracing::debug!(stream = id, ?delay, "stream reconnects after a delay");
                    ctx.run_later(delay, move |act, ctx| {
                        act.drive_stream(id, StreamEvent::RetryTimerFired, ctx)
                    });
                }
                StreamEffect::Abort => {
                    if let Some(handle) = self.streams.get_mut(&id).and_then(|t| t.task.take()) {
                        ctx.cancel_future(handle);
                    }
                }
                StreamEffect::GiveUp { refused } => {
                    let tracked = self.streams.remove(&id);
                    if id == LEGACY_STREAM {
                        // The link heard about the refusal or failure already.
                    } else if id == GET_STREAM {
                        if refused {
                            self.get_refused = true;
                            tracing::info!("the server offers no GET stream; server messages come with responses only");
                        } else {
                            tracing::warn!("the GET stream could not be re-established");
                        }
                    } else if let Some(key) = tracked.and_then(|t| t.awaiting) {
                        self.fail_key(
                            key,
                            "the response stream broke and could not be resumed".into(),
                        );
                    }
                }
            }
        }
    }

    fn start_resume(
        &mut self,
        key: IdKey,
        last_event_id: Option<String>,
        retry_ms: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        let id = self.next_stream;
        self.next_stream += 1;
        tracing::info!("response stream for id={key} broke; resuming with Last-Event-ID");
        let machine = StreamLink::new(BackoffPolicy::RESUME, self.config.seed.wrapping_add(id))
            .state_machine();
        self.streams.insert(
            id,
            Tracked {
                machine,
                task: None,
                awaiting: Some(key),
            },
        );
        self.drive_stream(
            id,
            StreamEvent::Ended {
                now: Instant::now(),
                last_event_id,
                retry_ms,
            },
            ctx,
        );
    }

    fn delete_then_exit(&mut self, ctx: &mut Context<Self>) {
        let Some(session_id) = self
            .link
            .session_id()
            .and_then(|s| HeaderValue::from_str(s).ok())
        else {
            self.exit(ctx);
            return;
        };
        let mut request = self
            .authorize(self.http.delete(self.config.url.clone()))
            .headers(self.config.headers.clone())
            .header(transport::SESSION_HEADER, session_id)
            .timeout(DELETE_TIMEOUT);
        if let Some(v) = self
            .link
            .protocol_version()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            request = request.header(transport::VERSION_HEADER, v);
        }
        ctx.spawn(
            async move {
                match request.send().await {
                    Ok(r) => tracing::debug!("session DELETE answered {}", r.status()),
                    Err(e) => tracing::debug!("session DELETE failed: {}", describe_error(e)),
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| act.exit(ctx)),
        );
    }

    fn exit(&mut self, ctx: &mut Context<Self>) {
        for (_, tracked) in self.streams.drain() {
            if let Some(handle) = tracked.task {
                ctx.cancel_future(handle);
            }
        }
        let stdout = self.stdout.clone();
        ctx.spawn(
            async move {
                if let Some(stdout) = stdout {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(300), stdout.send(Flush)).await;
                }
                System::current().stop_with_code(0);
            }
            .into_actor(self),
        );
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(interval) = self.config.ping_interval {
            ctx.run_interval(interval, |act, ctx| act.keep_alive(ctx));
        }
    }
}

impl Session {
    /// One keep-alive tick: an unanswered ping means the peer went silent;
    /// otherwise send the next one (reserved id; its answer is swallowed).
    fn keep_alive(&mut self, ctx: &mut Context<Self>) {
        if self.exiting || !self.link.established() {
            return;
        }
        if self.ping_outstanding.take().is_some() {
            tracing::warn!("no answer to the keep-alive ping; treating the connection as dead");
            self.dispatch(LinkEvent::PeerSilent, ctx);
            return;
        }
        self.pings += 1;
        let id = format!("{}ping-{}", jsonrpc::RESERVED_ID_PREFIX, self.pings);
        let bytes = jsonrpc::request(&id, "ping", None);
        self.ping_outstanding = Some(id);
        let (request, with_session) = self.post(Bytes::from(bytes), true);
        self.spawn_exchange(Origin::Ping, request, with_session, false, ctx);
    }
}

impl Handler<Forward> for Session {
    type Result = ();

    fn handle(&mut self, Forward(outbound): Forward, ctx: &mut Context<Self>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = Bytes::from(outbound.bytes);
        if outbound.method.as_deref() == Some("initialize") {
            self.initialize = Some(bytes.clone());
            self.host_initialize = outbound.id_key.clone();
        }
        if let (Kind::Request, Some(key)) = (outbound.kind, &outbound.id_key) {
            self.awaiting.insert(key.clone(), seq);
            if self.link.transport() == Some(Transport::Legacy)
                && self.stream_is_quiet(Instant::now())
            {
                // Its answer would come on a stream that may have died silently.
                tracing::debug!(
                    "the server's event stream has been quiet; checking it before sending"
                );
                self.dispatch(LinkEvent::StreamQuiet, ctx);
            }
        }
        if outbound.method.as_deref() == Some("notifications/cancelled") {
            // A request answered by the proxy (time-out) while still waiting to be sent is dropped.
            let cancelled = jsonrpc::Message::parse(bytes.to_vec())
                .ok()
                .and_then(|m| m.params())
                .and_then(|p| p.get("requestId").map(|v| v.to_string()))
                .and_then(|raw| serde_json::value::RawValue::from_string(raw).ok())
                .and_then(|raw| IdKey::from_raw(&raw));
            if let Some(key) = cancelled {
                if let Some(&held) = self
                    .awaiting
                    .get(&key)
                    .filter(|s| self.unsent.contains_key(s))
                {
                    self.awaiting.remove(&key);
                    self.dispatch(LinkEvent::Withdraw { seq: held }, ctx);
                }
            }
        }
        if outbound.kind == Kind::Notification
            && outbound.method.as_deref() == Some("notifications/initialized")
        {
            self.initialized_seq = Some(seq);
            self.confirm_deadline(ctx);
        }
        self.unsent.insert(
            seq,
            Pending {
                bytes,
                kind: outbound.kind,
                id_key: outbound.id_key,
                retried: false,
                generation: self.live_connection.unwrap_or(0),
                posted_at: None,
            },
        );
        self.dispatch(
            LinkEvent::HostSent {
                seq,
                kind: outbound.kind,
                method: outbound.method,
            },
            ctx,
        );
    }
}

impl Handler<ServerMessage> for Session {
    type Result = ();

    fn handle(&mut self, incoming: ServerMessage, ctx: &mut Context<Self>) {
        let ServerMessage {
            message,
            session_id,
            ..
        } = incoming;
        if message.kind == Kind::Response {
            if let Some(key) = message.id_key.clone() {
                if key.is_reserved() {
                    if self
                        .reinit_id
                        .as_deref()
                        .is_some_and(|id| key == IdKey::Str(id.to_owned()))
                    {
                        self.reinit_id = None;
                        let event = if message.is_error {
                            LinkEvent::ReinitFailed {
                                reason: "the server refused the replayed initialize".into(),
                            }
                        } else {
                            LinkEvent::ReinitAnswered {
                                session_id,
                                protocol_version: jsonrpc::negotiated_version(&message),
                            }
                        };
                        self.dispatch(event, ctx);
                    }
                    if self
                        .ping_outstanding
                        .as_deref()
                        .is_some_and(|id| key == IdKey::Str(id.to_owned()))
                    {
                        self.ping_outstanding = None;
                    }
                    self.check_answered(&key, ctx);
                    return; // the proxy's own request: never shown to the host
                }
                if self.host_initialize.as_ref() == Some(&key) {
                    self.host_initialize = None;
                    let event = if message.is_error {
                        LinkEvent::InitializeFailed
                    } else {
                        LinkEvent::InitializeAnswered {
                            session_id,
                            protocol_version: jsonrpc::negotiated_version(&message),
                        }
                    };
                    self.dispatch(event, ctx);
                }
                if self.awaiting.remove(&key).is_some() {
                    let resuming: Vec<u64> = self
                        .streams
                        .iter()
                        .filter(|(_, t)| t.awaiting.as_ref() == Some(&key))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in resuming {
                        self.drive_stream(id, StreamEvent::Closed, ctx);
                        self.streams.remove(&id);
                    }
                }
            }
        }
        self.bridge.do_send(Inbound(message));
    }
}

impl Handler<ExchangeEnded> for Session {
    type Result = ();

    fn handle(&mut self, ended: ExchangeEnded, ctx: &mut Context<Self>) {
        let ExchangeEnded { origin, end } = ended;
        match origin {
            Origin::Post { seq } => {
                if self.initialized_seq == Some(seq) {
                    self.initialized_seq = None;
                    self.dispatch(LinkEvent::InitializedDelivered, ctx);
                }
                self.post_tasks.remove(&seq);
                let Some(pending) = self.posted.remove(&seq) else {
                    return;
                };
                if matches!(end, ExchangeEnd::Accepted | ExchangeEnd::Done { .. }) {
                    self.token_worked();
                }
                self.post_ended(&pending, &end, ctx);
                if !matches!(
                    end,
                    ExchangeEnd::Failed { .. } | ExchangeEnd::Unreachable { .. }
                ) {
                    self.dispatch(LinkEvent::Reachable, ctx);
                }
                match end {
                    ExchangeEnd::Expired => {
                        let retried = pending.retried;
                        self.unsent.insert(seq, pending);
                        self.dispatch(LinkEvent::SessionExpired { seq, retried }, ctx);
                    }
                    ExchangeEnd::Busy { retry_after } => {
                        tracing::info!(
                            "the server is busy; it asks to retry after {} s",
                            retry_after.as_secs()
                        );
                        self.unsent.insert(seq, pending);
                        self.dispatch(LinkEvent::Busy { seq, retry_after }, ctx);
                    }
                    ExchangeEnd::Unauthorized { status, challenge } => {
                        let need = match (status, &challenge.scope) {
                            (403, Some(scope)) => Need::InsufficientScope {
                                scope: scope.clone(),
                            },
                            _ => Need::Unauthorized {
                                scope: challenge.scope.clone(),
                            },
                        };
                        self.last_need = Some((need, challenge));
                        self.unsent.insert(seq, pending);
                        self.dispatch(LinkEvent::Unauthorized { seq }, ctx);
                    }
                    ExchangeEnd::Refused { status, detail }
                        if pending.id_key.is_some() && pending.id_key == self.host_initialize =>
                    {
                        // The link decides: fall back to the other transport, or fail.
                        tracing::info!(
                            "the server refused the Streamable HTTP initialize: {detail}"
                        );
                        self.unsent.insert(seq, pending);
                        self.dispatch(
                            LinkEvent::InitializeRefused {
                                seq,
                                status,
                                reason: detail,
                            },
                            ctx,
                        );
                    }
                    ExchangeEnd::Unreachable { .. }
                        if self.link.transport() == Some(Transport::Streamable)
                            && (pending.id_key.is_none()
                                || pending.id_key != self.host_initialize) =>
                    {
                        // Never reached the server: the link retries it after a delay.
                        self.unsent.insert(seq, pending);
                        self.dispatch(LinkEvent::Unreachable { seq }, ctx);
                    }
                    ExchangeEnd::Unreachable { .. }
                        if self.link.transport() == Some(Transport::Legacy)
                            && (pending.id_key.is_none()
                                || pending.id_key != self.host_initialize) =>
                    {
                        // Never reached the server: keep it for the next connection.
                        let retried = pending.retried;
                        self.unsent.insert(seq, pending);
                        self.dispatch(LinkEvent::SessionExpired { seq, retried }, ctx);
                    }
                    ExchangeEnd::Refused { detail, .. }
                    | ExchangeEnd::Failed { detail }
                    | ExchangeEnd::Unreachable { detail } => {
                        let initialize =
                            pending.id_key.is_some() && pending.id_key == self.host_initialize;
                        self.fail(&pending, detail);
                        if initialize {
                            self.host_initialize = None;
                            self.dispatch(LinkEvent::InitializeFailed, ctx);
                        }
                    }
                    ExchangeEnd::Done {
                        last_event_id,
                        retry_ms,
                        broken,
                    } => {
                        let Some(key) = pending.id_key.filter(|k| self.awaiting.contains_key(k))
                        else {
                            return;
                        };
                        match (last_event_id, broken) {
                            (Some(last), _) => self.start_resume(key, Some(last), retry_ms, ctx),
                            (None, Some(why)) => self.fail_key(
                                key,
                                format!("the response stream broke before the answer ({why})"),
                            ),
                            (None, None) => self.fail_key(
                                key,
                                "the server ended the response without answering".into(),
                            ),
                        }
                    }
                    ExchangeEnd::Accepted | ExchangeEnd::StreamOpened => {
                        let Some(key) = pending.id_key.filter(|k| self.awaiting.contains_key(k))
                        else {
                            return;
                        };
                        if pending.generation != 0
                            && self.live_connection != Some(pending.generation)
                        {
                            // Accepted by the server, but its answer was to come on a stream that died meanwhile.
                            self.fail_key(key, "the connection to the server dropped".into());
                        } else {
                            tracing::debug!("request id={key} was accepted; its answer comes on the event stream");
                        }
                    }
                }
            }
            // On the legacy transport the answer comes on the event stream, after the 202.
            // A replay that a newer one replaced: its end means nothing now.
            Origin::Reinit { number } if number != self.reinits => {}
            Origin::Reinit { .. } if end == ExchangeEnd::Accepted => {
                self.reinit_task = None;
                self.watch_reinit(ctx);
            }
            Origin::Reinit { .. } => {
                self.reinit_task = None;
                if self.reinit_id.take().is_some() {
                    let reason = match end {
                        ExchangeEnd::Refused { detail, .. }
                        | ExchangeEnd::Failed { detail }
                        | ExchangeEnd::Unreachable { detail } => detail,
                        ExchangeEnd::Expired => "HTTP 404".into(),
                        _ => "the server did not answer the replayed initialize".into(),
                    };
                    self.dispatch(LinkEvent::ReinitFailed { reason }, ctx);
                }
            }
            Origin::Check { number } => self.check_ping_ended(number, end, ctx),
            Origin::Ping => {
                if !matches!(end, ExchangeEnd::Accepted | ExchangeEnd::Done { .. }) {
                    tracing::debug!("keep-alive ping failed: {end:?}");
                }
                // Any HTTP answer (even 401 or 404) shows the server is there; only a
                // network failure, or no answer by the next tick, means silence.
                if !matches!(
                    end,
                    ExchangeEnd::Failed { .. } | ExchangeEnd::Unreachable { .. }
                ) && self.link.transport() == Some(Transport::Streamable)
                {
                    self.ping_outstanding = None;
                }
            }
            Origin::Own => {
                if let ExchangeEnd::Refused { detail, .. }
                | ExchangeEnd::Failed { detail }
                | ExchangeEnd::Unreachable { detail } = end
                {
                    tracing::warn!(
                        "notifications/initialized after re-initialization failed: {detail}"
                    );
                }
                self.dispatch(LinkEvent::InitializedDelivered, ctx);
            }
            Origin::Get {
                stream: LEGACY_STREAM,
            } => self.legacy_stream_ended(end, ctx),
            Origin::Get { stream } => {
                let now = Instant::now();
                let event = match end {
                    ExchangeEnd::StreamOpened => StreamEvent::Connected { now },
                    ExchangeEnd::Unauthorized { status, .. } => StreamEvent::Refused { status },
                    ExchangeEnd::Done {
                        last_event_id,
                        retry_ms,
                        broken,
                    } => {
                        if let Some(why) = broken {
                            tracing::debug!(stream, "GET stream broke: {why}");
                        }
                        StreamEvent::Ended {
                            now,
                            last_event_id,
                            retry_ms,
                        }
                    }
                    ExchangeEnd::Refused { status, .. } => StreamEvent::Refused { status },
                    ExchangeEnd::Failed { detail } | ExchangeEnd::Unreachable { detail } => {
                        tracing::debug!(stream, "GET stream failed: {detail}");
                        StreamEvent::Failed { now }
                    }
                    ExchangeEnd::Accepted | ExchangeEnd::Expired | ExchangeEnd::Busy { .. } => {
                        StreamEvent::Failed { now }
                    }
                };
                self.drive_stream(stream, event, ctx);
            }
        }
    }
}

impl Session {
    /// The legacy event stream answered, ended or failed: tell the link, then the stream machine.
    fn legacy_stream_ended(&mut self, end: ExchangeEnd, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if end != ExchangeEnd::StreamOpened {
            self.legacy_open_ended();
        }
        let (link_event, stream_event) = match end {
            ExchangeEnd::Unauthorized { status, challenge } => {
                self.last_need = Some((
                    Need::Unauthorized {
                        scope: challenge.scope.clone(),
                    },
                    challenge,
                ));
                (
                    Some(LinkEvent::StreamUnauthorized),
                    StreamEvent::Refused { status },
                )
            }
            ExchangeEnd::StreamOpened => {
                // Until the `endpoint` event, the open time-out (liveness.rs) applies.
                (None, StreamEvent::Connected { now })
            }
            ExchangeEnd::Done {
                last_event_id,
                retry_ms,
                broken,
            } => {
                if let Some(why) = &broken {
                    tracing::info!("the server's event stream broke: {why}");
                } else {
                    tracing::info!("the server closed its event stream");
                }
                self.check = None;
                let link_event = if self.live_connection.take().is_some() {
                    LinkEvent::LegacyStreamLost
                } else {
                    LinkEvent::LegacyFailed {
                        reason: "the event stream ended before its endpoint event".into(),
                    }
                };
                (
                    Some(link_event),
                    StreamEvent::Ended {
                        now,
                        last_event_id,
                        retry_ms,
                    },
                )
            }
            ExchangeEnd::Refused { status, detail } => (
                Some(LinkEvent::LegacyRefused {
                    status,
                    reason: detail,
                }),
                StreamEvent::Refused { status },
            ),
            ExchangeEnd::Failed { detail } | ExchangeEnd::Unreachable { detail } => (
                Some(LinkEvent::LegacyFailed { reason: detail }),
                StreamEvent::Failed { now },
            ),
            ExchangeEnd::Accepted | ExchangeEnd::Expired | ExchangeEnd::Busy { .. } => {
                let reason = "the server did not answer with an event stream".to_owned();
                (
                    Some(LinkEvent::LegacyFailed { reason }),
                    StreamEvent::Failed { now },
                )
            }
        };
        if let Some(event) = link_event {
            self.dispatch(event, ctx);
        }
        self.drive_stream(LEGACY_STREAM, stream_event, ctx);
    }
}

impl Session {
    /// Tell the Authorizer once that the current token works (it resets its retry counts).
    fn token_worked(&mut self) {
        if self.authorization.is_some() && !self.token_confirmed {
            self.token_confirmed = true;
            if let Some((_, worked)) = &self.authorizer {
                worked.do_send(TokenWorked);
            }
        }
    }
}

impl Handler<TokenReady> for Session {
    type Result = ();

    fn handle(&mut self, TokenReady(token): TokenReady, ctx: &mut Context<Self>) {
        match HeaderValue::from_str(&format!("Bearer {}", token.0)) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.authorization = Some(value);
                self.token_confirmed = false;
                self.dispatch(LinkEvent::TokenArrived, ctx);
            }
            Err(_) => self.dispatch(
                LinkEvent::AuthFailed {
                    reason:
                        "the authorization server issued a token that cannot be sent in a header"
                            .into(),
                },
                ctx,
            ),
        }
    }
}

impl Handler<AuthFailed> for Session {
    type Result = ();

    fn handle(&mut self, failed: AuthFailed, ctx: &mut Context<Self>) {
        self.dispatch(
            LinkEvent::AuthFailed {
                reason: format!("sign-in failed: {}", failed.reason),
            },
            ctx,
        );
    }
}

impl Handler<LegacyEndpoint> for Session {
    type Result = ();

    fn handle(&mut self, message: LegacyEndpoint, ctx: &mut Context<Self>) {
        if message.generation != self.legacy_generation {
            return; // from a stream that was replaced
        }
        match message.endpoint {
            Ok(endpoint) => {
                tracing::info!("the server's event stream is ready (legacy HTTP+SSE transport)");
                self.legacy_opened();
                self.connections += 1;
                self.live_connection = Some(self.connections);
                self.dispatch(
                    LinkEvent::EndpointReceived {
                        endpoint: endpoint.to_string(),
                    },
                    ctx,
                );
            }
            Err(e) => {
                tracing::warn!("{e}");
                self.dispatch(
                    LinkEvent::EndpointRejected {
                        reason: e.to_string(),
                    },
                    ctx,
                );
            }
        }
    }
}

impl Handler<Shutdown> for Session {
    type Result = ();

    fn handle(&mut self, shutdown: Shutdown, ctx: &mut Context<Self>) {
        if self.exiting {
            return;
        }
        self.exiting = true;
        tracing::info!("shutting down: {}", shutdown.reason);
        ctx.run_later(EXIT_DEADLINE, |_, _| System::current().stop_with_code(0));
        let had_session = self.link.session_id().is_some();
        self.dispatch(LinkEvent::ShutdownRequested, ctx);
        if !had_session {
            self.exit(ctx);
        }
    }
}

/// One HTTP exchange, run as a future of the Session.
struct Exchange {
    /// Which exchange this is.
    origin: Origin,
    /// Where to report.
    session: Addr<Session>,
    /// Largest message accepted.
    max: usize,
    /// Longest wait for response headers.
    headers_timeout: Option<Duration>,
    /// Whether the request carried `Mcp-Session-Id` (a 404 then means expiry).
    sent_session: bool,
    /// A GET stream rather than a POST.
    is_get: bool,
    /// For the legacy event stream: its generation and URL (`endpoint` events are resolved against it).
    legacy: Option<(u64, Url)>,
    /// When bytes last came on a stream and its keep-alive pace (shared with the
    /// Session for the legacy stream).
    pulse: Pulse,
}

impl Exchange {
    async fn run(self, request: reqwest::RequestBuilder) {
        let end = self.exchange(request).await;
        self.session.do_send(ExchangeEnded {
            origin: self.origin,
            end,
        });
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> ExchangeEnd {
        // A stream's response headers come at once from a live server; a GET that hangs
        // there (a silent network) is given up sooner so the stream machine can retry.
        let headers_timeout = match (self.is_get, self.headers_timeout) {
            (true, Some(t)) => Some(t.min(STREAM_OPEN_TIMEOUT)),
            (true, None) => Some(STREAM_OPEN_TIMEOUT),
            (false, t) => t,
        };
        let sent = match headers_timeout {
            Some(limit) => match tokio::time::timeout(limit, request.send()).await {
                Ok(sent) => sent,
                Err(_) => {
                    return ExchangeEnd::Failed {
                        detail: format!(
                            "no response from the server within {} s (--headers-timeout)",
                            limit.as_secs()
                        ),
                    }
                }
            },
            None => request.send().await,
        };
        let mut response = match sent {
            Ok(r) => r,
            // Refused before the request was written: it surely never reached the server.
            Err(e) if e.is_connect() => {
                return ExchangeEnd::Unreachable {
                    detail: describe_error(e),
                }
            }
            Err(e) => {
                return ExchangeEnd::Failed {
                    detail: describe_error(e),
                }
            }
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let session_id = response
            .headers()
            .get(transport::SESSION_HEADER)
            .filter(|v| transport::valid_session_id(v.as_bytes()))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let code = status.as_u16();
        let describe = || match status.canonical_reason() {
            Some(reason) => format!("the server answered HTTP {code} {reason}"),
            None => format!("the server answered HTTP {code}"),
        };
        if self.is_get {
            return match transport::classify_get(code, content_type.as_deref()) {
                GetOutcome::Stream => {
                    self.session.do_send(ExchangeEnded {
                        origin: self.origin,
                        end: ExchangeEnd::StreamOpened,
                    });
                    self.read_sse(&mut response, session_id).await
                }
                GetOutcome::Unauthorized => ExchangeEnd::Unauthorized {
                    status: code,
                    challenge: challenge_of(&response),
                },
                GetOutcome::Refused => ExchangeEnd::Refused {
                    status: code,
                    detail: describe(),
                },
                GetOutcome::Retry => ExchangeEnd::Failed { detail: describe() },
            };
        }
        match transport::classify_post(code, content_type.as_deref(), self.sent_session) {
            PostOutcome::Accepted => ExchangeEnd::Accepted,
            PostOutcome::Json => match read_limited(&mut response, self.max).await {
                Ok(body) => {
                    self.deliver(body, &session_id);
                    ExchangeEnd::Done {
                        last_event_id: None,
                        retry_ms: None,
                        broken: None,
                    }
                }
                Err(detail) => ExchangeEnd::Failed { detail },
            },
            PostOutcome::EventStream => self.read_sse(&mut response, session_id).await,
            PostOutcome::SessionExpired => ExchangeEnd::Expired,
            PostOutcome::Unauthorized => ExchangeEnd::Unauthorized {
                status: code,
                challenge: challenge_of(&response),
            },
            PostOutcome::Failed { status: 503 | 429 } if retry_after(&response).is_some() => {
                ExchangeEnd::Busy {
                    retry_after: retry_after(&response).unwrap_or_default(),
                }
            }
            PostOutcome::Failed { status: 403 } if is_insufficient_scope(&response) => {
                ExchangeEnd::Unauthorized {
                    status: 403,
                    challenge: challenge_of(&response),
                }
            }
            PostOutcome::Failed { status } => {
                // The body MAY be a JSON-RPC error for the request (transports §Sending Messages
                // item 4); one for a request of the proxy's own is not the host's business.
                let hosts = matches!(self.origin, Origin::Post { .. });
                if let Ok(body) = read_limited(&mut response, ERROR_BODY_LIMIT).await {
                    if hosts && jsonrpc::is_json(&body) {
                        self.deliver(body, &session_id);
                    }
                }
                ExchangeEnd::Refused {
                    status,
                    detail: describe(),
                }
            }
        }
    }

    async fn read_sse(
        &self,
        response: &mut reqwest::Response,
        session_id: Option<String>,
    ) -> ExchangeEnd {
        let mut parser = SseParser::new(self.max);
        let mut broken = None;
        // Long-lived GET streams: notice a connection that died silently (no FIN, no RST).
        loop {
            let limit = read_pulse(&self.pulse, |w| w.limit());
            let next = match limit.filter(|_| self.is_get) {
                Some(limit) => match tokio::time::timeout(limit, response.chunk()).await {
                    Ok(next) => next,
                    Err(_) => {
                        broken = Some(format!("the stream went silent for {} s", limit.as_secs()));
                        break;
                    }
                },
                None => response.chunk().await,
            };
            match next {
                Ok(Some(chunk)) => {
                    let comments = parser.comments();
                    if let Err(e) = parser.push(&chunk) {
                        if !self.is_get {
                            // Resuming would fetch the same event again: the request fails.
                            return ExchangeEnd::Failed {
                                detail: format!(
                                    "the server sent a message over the limit: {e} \
                                     (--max-message-bytes)"
                                ),
                            };
                        }
                        broken = Some(e.to_string());
                        break;
                    }
                    let mut keepalive = parser.comments() > comments;
                    while let Some(event) = parser.next_event() {
                        if let (Some("endpoint"), Some((generation, url))) =
                            (event.event.as_deref(), &self.legacy)
                        {
                            let endpoint = transport::resolve_endpoint(url, &event.data);
                            self.session.do_send(LegacyEndpoint {
                                generation: *generation,
                                endpoint,
                            });
                            continue;
                        }
                        // Priming events have no data; other event types are not MCP messages.
                        if event.data.is_empty()
                            || !matches!(event.event.as_deref(), None | Some("message"))
                        {
                            keepalive = true;
                            continue;
                        }
                        self.deliver(event.data.into_bytes(), &session_id);
                    }
                    let now = Instant::now();
                    read_pulse(&self.pulse, |w| match keepalive {
                        true => w.on_keepalive(now),
                        false => w.on_bytes(now),
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(describe_error(e));
                    break;
                }
            }
        }
        ExchangeEnd::Done {
            last_event_id: parser.last_event_id().map(str::to_owned),
            retry_ms: parser.retry(),
            broken,
        }
    }

    fn deliver(&self, body: Vec<u8>, session_id: &Option<String>) {
        let send = |message| {
            self.session.do_send(ServerMessage {
                origin: self.origin,
                message,
                session_id: session_id.clone(),
            })
        };
        match jsonrpc::parse_incoming(jsonrpc::compact(body)) {
            Ok(Incoming::Single(message)) => send(message),
            Ok(Incoming::Batch(items)) => {
                for item in items {
                    match item {
                        Ok(message) => send(message),
                        Err(e) => {
                            tracing::warn!("the server sent a message that is not JSON-RPC: {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("the server sent a message that is not JSON-RPC: {e}"),
        }
    }
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3), capped at two minutes; an HTTP-date is not used.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(120)))
}

/// The Bearer challenge of a 401/403 answer.
fn challenge_of(response: &reqwest::Response) -> BearerChallenge {
    let values: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    machines::auth::challenge::bearer(&values).unwrap_or_default()
}

/// RFC 6750 §3.1: a 403 that asks for more scope (MCP §Step-Up Authorization Flow).
fn is_insufficient_scope(response: &reqwest::Response) -> bool {
    challenge_of(response).error.as_deref() == Some("insufficient_scope")
}

/// Read a whole body, refusing more than `max` bytes.
async fn read_limited(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_error)? {
        if body.len() + chunk.len() > max {
            return Err(format!(
                "the server's response is larger than {max} bytes (--max-message-bytes)"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
