//! Starting the actors and connecting them.
//!
//! ```text
//! stdin ─► StdinReader ─► Bridge ─► Session ══HTTP══► server
//! stdout ◄─ StdoutWriter ◄─ Bridge ◄─ Session
//! ```

use crate::settings::Settings;
use actix::{Actor, Addr, AsyncContext, Context, Recipient};
use actors::authorizer::Authorizer;
use actors::bridge::Bridge;
use actors::http::{build_client, build_oauth_client, HttpSetupError};
use actors::messages::AuthorizerPeers;
use actors::messages::{Flush, ServerFrame, Shutdown};
use actors::session::{Session, SessionConfig};
use actors::stdin_reader::StdinReader;
use actors::token_store::TokenStore;

use actors::stdout_writer::StdoutWriter;

/// The started core: a Bridge and a Session wired to each other.
pub struct Core {
    /// The Bridge, for frames from the host.
    pub bridge: Addr<Bridge>,
    /// The Session, for shutdown.
    pub session: Addr<Session>,
}

/// Start Bridge and Session; server messages for the host go to `host`.
/// Must run inside an actix System.
pub fn start_core(
    settings: &Settings,
    host: Recipient<ServerFrame>,
    flush: Option<Recipient<Flush>>,
    seed: u64,
) -> Result<Core, HttpSetupError> {
    let http = build_client(&settings.http)?;
    let store = TokenStore::new(settings.config_dir.clone(), settings.key.clone());
    if settings.clean {
        tracing::info!("--clean: forgetting this server's stored credentials");
        store.forget(true);
    }
    let authorizer = Authorizer::new(
        settings.auth.clone(),
        build_oauth_client(&settings.http)?,
        store,
    )
    .start();
    let bridge_ctx = Context::<Bridge>::new();
    let bridge_addr = bridge_ctx.address();
    let session = Session::new(
        SessionConfig {
            url: settings.url.clone(),
            headers: settings.headers.clone(),
            headers_timeout: settings.headers_timeout,
            max_message_bytes: settings.max_message_bytes,
            seed,
            strategy: settings.strategy,
            transport_memory: Some(settings.transport_memory()),
            ping_interval: settings.ping_interval,
        },
        http,
        bridge_addr.clone().recipient(),
        bridge_addr.clone().recipient(),
        flush,
    )
    .with_authorizer(
        authorizer.clone().recipient(),
        authorizer.clone().recipient(),
    )
    .start();
    authorizer.do_send(AuthorizerPeers {
        ready: session.clone().recipient(),
        failed: session.clone().recipient(),
    });
    let bridge = Bridge::new(
        settings.router.clone(),
        session.clone().recipient(),
        session.clone().recipient(),
        host,
    );
    let bridge = bridge_ctx.run(bridge);
    Ok(Core { bridge, session })
}

/// Start the whole proxy on this process's stdin and stdout.
pub fn start_proxy(settings: &Settings, seed: u64) -> Result<Core, HttpSetupError> {
    let stdout = StdoutWriter::new(tokio::io::stdout()).start();
    let core = start_core(
        settings,
        stdout.clone().recipient(),
        Some(stdout.recipient()),
        seed,
    )?;
    StdinReader::new(
        actors::stdin_reader::spawn_stdin_thread(),
        core.bridge.clone().recipient(),
        core.bridge.clone().recipient(),
        settings.max_message_bytes,
    )
    .start();
    watch_signals(core.session.clone().recipient());
    Ok(core)
}

/// SIGINT and SIGTERM (Ctrl-C on Windows) start the orderly shutdown.
pub fn watch_signals(session: Recipient<Shutdown>) {
    actix::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            let reason = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            session.do_send(Shutdown { reason });
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                session.do_send(Shutdown { reason: "Ctrl-C" });
            }
        }
    });
}

/// A seed for reconnection jitter, different per process.
pub fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
