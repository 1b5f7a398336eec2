//! Bridge: the router between the host and the remote session.
//!
//! It feeds every event to the [`Router`] machine and performs what comes out:
//! messages for the server go to the Session, lines for the host go to the
//! StdoutWriter. It logs one line per message at info level — direction,
//! method and id, never a body — and runs the request-timeout clock.
//!
//! On stdin end of file it gives in-flight requests a moment to be answered,
//! then asks the Session to shut down.

use crate::messages::{
    ClientFrame, Forward, HostClosed, Inbound, RequestFailed, ServerFrame, Shutdown,
};
use actix::prelude::*;
use machines::jsonrpc::{self, Kind, Message};
use machines::router::{Router, RouterConfig, RouterEffect};
use std::time::{Duration, Instant};

/// How often request deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// How long in-flight requests may still be answered after stdin closed.
const DRAIN_AFTER_EOF: Duration = Duration::from_millis(700);

/// The Bridge actor.
pub struct Bridge {
    /// The routing decisions.
    router: Router,
    /// Where messages for the server go.
    session: Recipient<Forward>,
    /// Who is told to stop.
    shutdown: Recipient<Shutdown>,
    /// Where lines for the host go.
    stdout: Recipient<ServerFrame>,
    /// Whether stdin has closed (drain, then stop).
    host_closed_at: Option<Instant>,
}

impl Bridge {
    /// A bridge with these settings and peers.
    pub fn new(
        config: RouterConfig,
        session: Recipient<Forward>,
        shutdown: Recipient<Shutdown>,
        stdout: Recipient<ServerFrame>,
    ) -> Self {
        Self {
            router: Router::new(config),
            session,
            shutdown,
            stdout,
            host_closed_at: None,
        }
    }

    fn perform(&mut self, effects: Vec<RouterEffect>) {
        for effect in effects {
            match effect {
                RouterEffect::Forward(outbound) => {
                    log_message(
                        "host → server",
                        outbound.kind,
                        outbound.method.as_deref(),
                        outbound.id_key.as_ref().map(|k| k.to_string()),
                    );
                    self.session.do_send(Forward(outbound));
                }
                RouterEffect::ToHost(line) => self.stdout.do_send(ServerFrame(line)),
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let mut out = Vec::new();
        self.router.on_tick(now, &mut out);
        self.perform(out);
        if let Some(closed) = self.host_closed_at {
            if self.router.pending() == 0 || now.duration_since(closed) >= DRAIN_AFTER_EOF {
                self.host_closed_at = None;
                self.router.clear();
                self.shutdown.do_send(Shutdown {
                    reason: "stdin closed",
                });
            }
        }
    }
}

fn log_message(direction: &str, kind: Kind, method: Option<&str>, id: Option<String>) {
    match (kind, method, id) {
        (Kind::Response, _, Some(id)) => tracing::info!("{direction} response id={id}"),
        (Kind::Response, _, None) => tracing::info!("{direction} response"),
        (_, Some(m), Some(id)) => tracing::info!("{direction} {m} id={id}"),
        (_, Some(m), None) => tracing::info!("{direction} {m}"),
        _ => tracing::info!("{direction} message"),
    }
}

impl Actor for Bridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, _| act.tick());
    }
}

impl Handler<ClientFrame> for Bridge {
    type Result = ();

    fn handle(&mut self, frame: ClientFrame, _: &mut Context<Self>) {
        let mut out = Vec::new();
        match frame {
            ClientFrame::Incoming(incoming) => {
                self.router
                    .on_host_incoming(incoming, Instant::now(), &mut out)
            }
            ClientFrame::Garbage(malformed) => {
                tracing::warn!("host sent an unusable line: {malformed}");
                self.router.on_host_garbage(&malformed, &mut out);
            }
            ClientFrame::Oversized { len, max } => {
                tracing::warn!(
                    "host sent a line of {len} bytes, over the limit of {max}; it was skipped"
                );
                out.push(RouterEffect::ToHost(jsonrpc::error_response(
                    "null",
                    jsonrpc::INVALID_REQUEST,
                    &format!("message of {len} bytes exceeds the limit of {max} bytes (--max-message-bytes); it was dropped"),
                )));
            }
        }
        self.perform(out);
    }
}

impl Handler<Inbound> for Bridge {
    type Result = ();

    fn handle(&mut self, Inbound(message): Inbound, _: &mut Context<Self>) {
        log_server(&message);
        let mut out = Vec::new();
        self.router.on_server_message(message, &mut out);
        self.perform(out);
    }
}

fn log_server(message: &Message) {
    log_message(
        "server → host",
        message.kind,
        message.method.as_deref(),
        message.id_key.as_ref().map(|k| k.to_string()),
    );
}

impl Handler<RequestFailed> for Bridge {
    type Result = ();

    fn handle(&mut self, failed: RequestFailed, _: &mut Context<Self>) {
        tracing::warn!("request id={} failed: {}", failed.id_key, failed.error);
        let mut out = Vec::new();
        self.router
            .on_request_failed(&failed.id_key, &failed.error, &mut out);
        self.perform(out);
    }
}

impl Handler<HostClosed> for Bridge {
    type Result = ();

    fn handle(&mut self, _: HostClosed, _: &mut Context<Self>) {
        self.host_closed_at = Some(Instant::now());
        self.tick();
    }
}
