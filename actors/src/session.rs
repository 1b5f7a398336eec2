//! Session: the IO shell around the connection [`Engine`] (machines/src/engine).
//!
//! The engine decides everything between the host's line and the remote MCP
//! server — which answer the host is owed, which transport, what each HTTP answer
//! means, when to re-initialize, resume, check the connection or give up. This
//! actor only performs what it asks:
//!
//! - every frame from the StdinReader goes into the engine (one line per message
//!   at info level in the log: direction, method and id, never a body);
//! - every [`Transmit::Start`] becomes a reqwest request (plus the `--header` values
//!   and `Authorization`, which the engine never sees) run as a task of its own on
//!   this thread; its head, body chunks and end come back through one channel, and
//!   what waits there when the actor wakes goes into the engine as one batch, then
//!   one drive (not an actix future per exchange: actix polls every one of them at
//!   each wake);
//! - [`Transmit::Abort`] aborts that task (a report of it still in the channel is dropped);
//! - events go to the StdoutWriter (lines for the host), to the Authorizer (token
//!   requests), to the transport memory file and to the log;
//! - one actix timer is kept at [`Engine::poll_timeout`].
//!
//! After every input the shell drains every output (the engine's driving contract).

mod record;

use crate::http::describe_error;
use crate::messages::{
    AuthFailed, ClientFrame, ClientFrames, HostClosed, NeedToken, ServerFrame, Shutdown,
    TokenReady, TokenWorked,
};
use crate::stdout_writer::HostOutput;
use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use machines::auth::AuthError;
use machines::engine::{
    Engine, EngineConfig, Event, Exchange, ExchangeId, HostConfig, Level, Method, NetworkError,
    Origin, ResponseHead, TokenOutcome, Transmit,
};
use machines::jsonrpc::{IdKey, Kind};
use machines::link::Strategy;
use machines::pacing::BodyPacing;
use machines::transport;
use record::{HeadSeen, Tracing};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use url::Url;

/// Whatever happens, the process ends this long after shutdown began (with the
/// engine's drain of at most 0.7 s after stdin closed, within 2 s of it).
const EXIT_DEADLINE: Duration = Duration::from_millis(1200);

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
    /// Answer the host's `initialize` from the remembered answer while a sign-in runs.
    pub initialize_from_memory: bool,
    /// `--keep-alive` / `--ping-interval`: send a ping this often; one unanswered by the
    /// next tick means the connection went silent.
    pub ping_interval: Option<Duration>,
    /// The host side: `--request-timeout`, `--ignore-tool`, the client tag.
    pub host: HostConfig,
    /// `--protocol`: probe for MCP 2026-07-28, or speak one era only.
    pub protocol: machines::engine::ProtocolMode,
    /// The per-origin cookie jar (off with `--disable-cookies`).
    pub cookies: bool,
}

/// What one exchange reports, in order: a head (or an end without one), chunks, an end.
enum Progress {
    /// The head, and (when tracing) what the trace shows of it.
    Head(ResponseHead, Option<HeadSeen>),
    Chunk(Bytes),
    /// The host's stdout queue is over its limit: the next chunk waits for room.
    Backlog,
    End(Result<(), NetworkError>),
}

/// The Session actor.
pub struct Session {
    /// The decisions.
    engine: Engine,
    /// `--header` values, added to every exchange.
    headers: HeaderMap,
    /// The server origin's cookies (`None`: `--disable-cookies`).
    cookies: Option<crate::cookies::CookieJar>,
    /// Where the remembered transport is written.
    transport_memory: Option<PathBuf>,
    /// The HTTP client.
    http: reqwest::Client,
    /// Where lines for the host go.
    host_link: HostLink,
    /// Where requests for a token go (none: the server is used without sign-in).
    authorizer: Option<(Recipient<NeedToken>, Recipient<TokenWorked>)>,
    /// `Authorization: Bearer …` for every exchange (marked sensitive).
    authorization: Option<HeaderValue>,
    /// The exchanges running, each its own task, to abort one the engine drops.
    running: HashMap<ExchangeId, tokio::task::AbortHandle>,
    /// Where the exchanges' tasks send their reports; [`Session::started`] takes the
    /// receiving end. One stream in the actor, not one per exchange: actix polls every
    /// future of an actor at each wake, so 64 exchanges in flight made every report
    /// cost 64 polls.
    reports: mpsc::UnboundedSender<Report>,
    reports_rx: Option<mpsc::UnboundedReceiver<Report>>,
    /// The one timer, and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
    /// Shutdown has begun.
    exiting: bool,
    /// `--trace` / `-v` (none: nothing is recorded, nothing is built).
    tracing: Option<Tracing>,
    /// Bodies wait for the host to read its stdout (a watcher waits for room).
    backlog: bool,
    /// What the engine holds of incomplete messages, and who reads on (with stdout).
    pacing: Option<BodyPacing>,
}

impl Session {
    /// A session to `config.url`.
    pub fn new(config: SessionConfig, http: reqwest::Client, host_link: HostLink) -> Self {
        let remembered = crate::store::read_transport(config.transport_memory.as_deref());
        let remembered_era = crate::store::read_era(config.transport_memory.as_deref());
        let remembered_initialize = config
            .initialize_from_memory
            .then(|| crate::store::read_initialize(config.transport_memory.as_deref()))
            .flatten();
        let tracing = crate::trace::get().map(Tracing::new);
        let engine = Engine::new(
            EngineConfig {
                url: config.url,
                max_message_bytes: config.max_message_bytes,
                seed: config.seed,
                strategy: config.strategy,
                remembered,
                ping_interval: config.ping_interval,
                headers_timeout: config.headers_timeout,
                host: config.host,
                trace: tracing.is_some(),
                protocol: config.protocol,
                remembered_era,
                remembered_initialize,
            },
            Instant::now(),
        );
        let (reports, reports_rx) = mpsc::unbounded_channel();
        Self {
            engine,
            reports,
            reports_rx: Some(reports_rx),
            headers: config.headers,
            cookies: config.cookies.then(crate::cookies::CookieJar::default),
            transport_memory: config.transport_memory,
            http,
            host_link,
            authorizer: None,
            authorization: None,
            running: HashMap::new(),
            timer: None,
            exiting: false,
            tracing,
            backlog: false,
            pacing: None,
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

    /// Performs everything the engine asks for, then keeps the timer at its next deadline.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        loop {
            let mut idle = true;
            while let Some(transmit) = self.engine.poll_transmit() {
                idle = false;
                match transmit {
                    Transmit::Start(exchange) => self.start(exchange),
                    Transmit::Abort(id) => {
                        if let Some(handle) = self.running.remove(&id) {
                            handle.abort();
                        }
                        if let Some(t) = &mut self.tracing {
                            t.exchange_ended(id, Err(None));
                        }
                        self.update_held(id);
                    }
                }
            }
            while let Some(event) = self.engine.poll_event() {
                idle = false;
                self.perform(event, ctx);
            }
            if idle {
                break;
            }
        }
        self.arm_timer(ctx);
    }

    fn perform(&mut self, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::ToHost(line) => {
                if let Some(t) = &mut self.tracing {
                    t.host_receives(&line);
                }
                if line.origin == Origin::Server {
                    log_message(
                        "server → host",
                        line.kind,
                        line.method.as_deref(),
                        line.id.as_ref(),
                    );
                }
                match &self.host_link {
                    HostLink::Output(out) => out.send(line.bytes),
                    HostLink::Actor(actor) => actor.do_send(ServerFrame(line.bytes)),
                }
            }
            Event::NeedToken { need, challenge } => match &self.authorizer {
                Some((ask, _)) => ask.do_send(NeedToken { need, challenge }),
                None => self
                    .engine
                    .handle_token(TokenOutcome::Failed(AuthError::Required), Instant::now()),
            },
            Event::TokenWorked => {
                if let Some((_, worked)) = &self.authorizer {
                    worked.do_send(TokenWorked);
                }
            }
            Event::RememberTransport(t) => {
                if let Some(path) = &self.transport_memory {
                    crate::store::write_transport(path, t, self.engine.url(), self.engine.era());
                }
            }
            Event::RememberInitialize(result) => {
                if let Some(path) = &self.transport_memory {
                    crate::store::write_initialize(path, &result);
                }
            }
            Event::ForgetTransport => {
                if let Some(path) = &self.transport_memory {
                    crate::store::forget_transport(path);
                }
            }
            Event::Log(line) => {
                if let Some(t) = &self.tracing {
                    t.log(&line);
                }
                match line.level() {
                    Level::Debug => tracing::debug!("{line}"),
                    Level::Info => tracing::info!("{line}"),
                    _ => tracing::warn!("{line}"),
                }
            }
            Event::Trace(record) => {
                if let Some(t) = &self.tracing {
                    t.machine(record);
                }
            }
            Event::Closed => self.exit(ctx),
        }
    }

    /// One actix timer at the engine's next deadline (a timer per deadline would cost
    /// every message a walk over the actor's spawned futures).
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.engine.poll_timeout() else {
            return;
        };
        if self.timer.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        if let Some((_, old)) = self.timer.take() {
            ctx.cancel_future(old);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.engine.handle_timeout(Instant::now());
            act.drive(ctx);
        });
        self.timer = Some((at, handle));
    }

    /// Start one exchange as a stream of progress reports fed back into the engine.
    fn start(&mut self, exchange: Exchange) {
        if let Some(t) = &mut self.tracing {
            t.exchange_started(&exchange, &self.headers, self.authorization.is_some());
        }
        let Exchange {
            id,
            method,
            url,
            headers,
            body,
            timeout,
            ..
        } = exchange;
        // The cookie jar is the server origin's alone (a legacy endpoint is checked to
        // be on it too); a `Cookie` of the user's `--header` wins.
        let jar_applies = self.cookies.is_some()
            && machines::transport::same_origin(&url, self.engine.url())
            && !self.headers.contains_key(reqwest::header::COOKIE);
        let https = url.scheme() == "https";
        let mut request = match method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Delete => self.http.delete(url),
        };
        if jar_applies {
            if let Some(cookie) = self
                .cookies
                .as_mut()
                .and_then(|jar| jar.header(https, Instant::now()))
            {
                if let Ok(mut value) = HeaderValue::from_str(&cookie) {
                    value.set_sensitive(true);
                    request = request.header(reqwest::header::COOKIE, value);
                }
            }
        }
        if let Some(value) = &self.authorization {
            // MCP authorization §Token Requirements: on every request.
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        request = request.headers(self.headers.clone());
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                request = request.header(name.as_ref(), value);
            }
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(limit) = timeout {
            request = request.timeout(limit);
        }
        let traced = self.tracing.is_some();
        let room = self.host_link.output().cloned();
        let reports = self.reports.clone();
        let task = actix::spawn(async move {
            let steps = progress(request, traced, room, id.0);
            futures_util::pin_mut!(steps);
            while let Some(mut step) = steps.next().await {
                if let Progress::Head(head, _) = &mut step {
                    if !jar_applies {
                        // Not the server origin's, or the user's `Cookie` wins.
                        head.set_cookie.clear();
                    }
                }
                if reports.send((id, step)).is_err() {
                    break;
                }
            }
        });
        self.running.insert(id, task.abort_handle());
    }

    /// What the exchanges reported since the last wake, in order; then one drive.
    fn reported(&mut self, batch: Vec<Report>, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for (id, report) in batch {
            // A report of an exchange the engine aborted may still be in the channel.
            if !self.running.contains_key(&id) {
                continue;
            }
            match report {
                Progress::Head(head, seen) => {
                    if let (Some(t), Some(seen)) = (&mut self.tracing, seen) {
                        t.head(id, head.status, seen, now);
                    }
                    if let Some(jar) = self.cookies.as_mut() {
                        if !head.set_cookie.is_empty() {
                            jar.store(&head.set_cookie, now);
                        }
                    }
                    self.engine.handle_head(id, head, now)
                }
                Progress::Chunk(chunk) => {
                    if let Some(t) = &mut self.tracing {
                        t.chunk(id, chunk.len());
                    }
                    self.engine.handle_body(id, &chunk, now);
                    self.update_held(id);
                }
                Progress::Backlog => self.host_backlog(ctx, now),
                Progress::End(result) => {
                    self.running.remove(&id);
                    if let Some(t) = &mut self.tracing {
                        t.exchange_ended(
                            id,
                            result.as_ref().map(|_| ()).map_err(|e| Some(e.to_string())),
                        );
                    }
                    self.engine.handle_end(id, result, now);
                    self.update_held(id);
                }
            }
        }
        self.drive(ctx);
    }

    /// After a chunk or the end of exchange `id`: what the engine holds of incomplete
    /// messages ([`BodyPacing`]), told to the output that gates the reading of bodies.
    fn update_held(&mut self, id: ExchangeId) {
        let Some(output) = self.host_link.output() else {
            return;
        };
        let pacing = self
            .pacing
            .get_or_insert_with(|| BodyPacing::new(output.held_limit()));
        if let Some((total, lead)) = pacing.update(id.0, self.engine.held_bytes(id)) {
            output.set_held(total, lead);
        }
    }

    /// The host stopped reading its stdout: tell the engine (its silence is not the
    /// server's), and tell it again once the host has read enough.
    fn host_backlog(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let Some(output) = self.host_link.output().cloned() else {
            return;
        };
        if std::mem::replace(&mut self.backlog, true) {
            return;
        }
        self.engine.handle_host_backlog(true, now);
        ctx.spawn(
            async move { output.room().await }
                .into_actor(self)
                .map(|(), act, ctx| {
                    act.backlog = false;
                    act.engine.handle_host_backlog(false, Instant::now());
                    act.drive(ctx);
                }),
        );
    }

    fn exit(&mut self, ctx: &mut Context<Self>) {
        for (_, handle) in self.running.drain() {
            handle.abort();
        }
        let output = self.host_link.output().cloned();
        ctx.spawn(
            async move {
                if let Some(stdout) = output {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(300), stdout.drained()).await;
                }
                System::current().stop_with_code(0);
            }
            .into_actor(self),
        );
    }
}

/// What went wrong, in the engine's terms: only a refused connect surely never reached the server.
fn network_error(error: reqwest::Error) -> NetworkError {
    let connect = error.is_connect();
    let timeout = error.is_timeout();
    let detail = describe_error(error);
    if connect {
        NetworkError::Connect(detail)
    } else if timeout {
        NetworkError::TimedOut(detail)
    } else {
        NetworkError::Broken(detail)
    }
}

/// The parts of the response head the engine reads.
fn head_of(response: &reqwest::Response) -> ResponseHead {
    let headers = response.headers();
    let status = response.status().as_u16();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    ResponseHead {
        status,
        content_length: response.content_length(),
        content_type: text(CONTENT_TYPE.as_str()),
        session_id: headers
            .get(transport::SESSION_HEADER)
            .filter(|v| transport::valid_session_id(v.as_bytes()))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        www_authenticate: match status {
            401 | 403 => headers
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        },
        retry_after: match status {
            429 | 503 => text("retry-after"),
            _ => None,
        },
        link: match status {
            410 => text("link"),
            _ => None,
        },
        set_cookie: headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect(),
    }
}

/// One exchange as a stream: its head, its body's chunks, its end. With `traced`,
/// the head also says its header names and its connection.
fn progress(
    request: reqwest::RequestBuilder,
    traced: bool,
    room: Option<HostOutput>,
    exchange: u64,
) -> impl futures_util::Stream<Item = Progress> {
    enum Step {
        Send(reqwest::RequestBuilder),
        Read(reqwest::Response),
        /// Told the Session of the backlog: wait for room, then read.
        WaitThenRead(reqwest::Response),
        Done,
    }
    futures_util::stream::unfold(Step::Send(request), move |step| {
        let room = room.clone();
        async move {
            match step {
                Step::Send(request) => match request.send().await {
                    Ok(response) => {
                        let seen = traced.then(|| HeadSeen {
                            names: response
                                .headers()
                                .keys()
                                .map(|name| name.as_str().to_owned())
                                .collect(),
                            local: response
                                .extensions()
                                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                                .map(|info| info.local_addr()),
                        });
                        Some((
                            Progress::Head(head_of(&response), seen),
                            Step::Read(response),
                        ))
                    }
                    Err(e) => Some((Progress::End(Err(network_error(e))), Step::Done)),
                },
                // Backpressure: while the host does not read its stdout, the rest of the
                // body stays in the socket (TCP flow control), not in this process.
                Step::Read(response) if room.as_ref().is_some_and(|r| !r.may_read(exchange)) => {
                    Some((Progress::Backlog, Step::WaitThenRead(response)))
                }
                Step::Read(mut response) | Step::WaitThenRead(mut response) => {
                    if let Some(room) = &room {
                        room.room_for(exchange).await;
                    }
                    match response.chunk().await {
                        Ok(Some(chunk)) => Some((Progress::Chunk(chunk), Step::Read(response))),
                        Ok(None) => Some((Progress::End(Ok(())), Step::Done)),
                        Err(e) => Some((Progress::End(Err(network_error(e))), Step::Done)),
                    }
                }
                Step::Done => None,
            }
        }
    })
}

/// Where the Session's lines for the host go.
#[derive(Clone)]
pub enum HostLink {
    /// This process's stdout: the proxy. Its queue also paces the reading of bodies.
    Output(HostOutput),
    /// An actor of this process: `mcp-remote-client`'s probe, tests.
    Actor(Recipient<ServerFrame>),
}

impl HostLink {
    fn output(&self) -> Option<&HostOutput> {
        match self {
            HostLink::Output(out) => Some(out),
            HostLink::Actor(_) => None,
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(rx) = self.reports_rx.take() {
            ctx.add_stream(Batches(rx));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for (_, handle) in self.running.drain() {
            handle.abort();
        }
    }
}

/// One exchange's report.
type Report = (ExchangeId, Progress);

/// The reports waiting in the channel, as one item (at most 256).
struct Batches(mpsc::UnboundedReceiver<Report>);

impl futures_util::Stream for Batches {
    type Item = Vec<Report>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Vec<Report>>> {
        let mut batch = Vec::new();
        match self.get_mut().0.poll_recv_many(cx, &mut batch, 256) {
            std::task::Poll::Ready(0) => std::task::Poll::Ready(None),
            std::task::Poll::Ready(_) => std::task::Poll::Ready(Some(batch)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl StreamHandler<Vec<Report>> for Session {
    fn handle(&mut self, batch: Vec<Report>, ctx: &mut Context<Self>) {
        self.reported(batch, ctx);
    }

    /// The Session holds a sender itself: the stream ends only with the actor.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<TokenReady> for Session {
    type Result = ();

    fn handle(&mut self, TokenReady(token): TokenReady, ctx: &mut Context<Self>) {
        let outcome = match HeaderValue::from_str(&format!("Bearer {}", token.0)) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.authorization = Some(value);
                TokenOutcome::Ready
            }
            Err(_) => TokenOutcome::Failed(AuthError::UnusableToken),
        };
        self.engine.handle_token(outcome, Instant::now());
        self.drive(ctx);
    }
}

impl Handler<AuthFailed> for Session {
    type Result = ();

    fn handle(&mut self, AuthFailed(error): AuthFailed, ctx: &mut Context<Self>) {
        self.engine
            .handle_token(TokenOutcome::Failed(error), Instant::now());
        self.drive(ctx);
    }
}

impl Handler<ClientFrame> for Session {
    type Result = ();

    fn handle(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        self.host_frame(frame, Instant::now());
        self.drive(ctx);
    }
}

/// A whole read of stdin: every message goes into the engine, then one drive.
impl Handler<ClientFrames> for Session {
    type Result = ();

    fn handle(&mut self, ClientFrames(frames): ClientFrames, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for frame in frames {
            self.host_frame(frame, now);
        }
        self.drive(ctx);
    }
}

impl Session {
    fn host_frame(&mut self, frame: ClientFrame, now: Instant) {
        match frame {
            ClientFrame::Incoming(incoming) => {
                if tracing::enabled!(tracing::Level::INFO) {
                    log_incoming(&incoming);
                }
                if let Some(t) = &mut self.tracing {
                    t.host_sent(&incoming, now);
                }
                self.engine.handle_host(incoming, now);
            }
            ClientFrame::Garbage(malformed) => {
                tracing::warn!("host sent an unusable line: {malformed}");
                self.engine.handle_host_garbage(&malformed);
            }
            ClientFrame::Oversized { len, max } => {
                tracing::warn!(
                    "host sent a line of {len} bytes, over the limit of {max}; it was skipped"
                );
                self.engine.handle_host_oversized(len, max);
            }
        }
    }
}

impl Handler<HostClosed> for Session {
    type Result = ();

    fn handle(&mut self, _: HostClosed, ctx: &mut Context<Self>) {
        tracing::info!("stdin closed: what is in flight has a moment to be answered");
        ctx.run_later(machines::engine::DRAIN_AFTER_EOF + EXIT_DEADLINE, |_, _| {
            System::current().stop_with_code(0)
        });
        self.engine.handle_host_closed(Instant::now());
        self.drive(ctx);
    }
}

fn log_incoming(incoming: &machines::jsonrpc::Incoming) {
    let one = |m: &machines::jsonrpc::Message| {
        log_message(
            "host → server",
            m.kind,
            m.method.as_deref(),
            m.id_key.as_ref(),
        )
    };
    match incoming {
        machines::jsonrpc::Incoming::Single(m) => one(m),
        machines::jsonrpc::Incoming::Batch(items) => items.iter().flatten().for_each(one),
    }
}

/// One line per relayed message at info level: direction, method and id, never a body.
fn log_message(direction: &str, kind: Kind, method: Option<&str>, id: Option<&IdKey>) {
    match (kind, method, id) {
        (Kind::Response, _, Some(id)) => tracing::info!("{direction} response id={id}"),
        (Kind::Response, _, None) => tracing::info!("{direction} response"),
        (_, Some(m), Some(id)) => tracing::info!("{direction} {m} id={id}"),
        (_, Some(m), None) => tracing::info!("{direction} {m}"),
        _ => tracing::info!("{direction} message"),
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
        self.engine.handle_shutdown(Instant::now());
        self.drive(ctx);
    }
}
