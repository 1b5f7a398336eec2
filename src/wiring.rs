//! Starting the actors and connecting them.
//!
//! ```text
//! stdin ─► StdinReader ─► Session ══HTTP══► server
//! stdout ◄─ StdoutWriter ◄─ Session
//! ```

use crate::settings::Settings;
use actix::{Actor, Addr, Recipient};
use actors::authorizer::Authorizer;
use actors::http::{build_client, build_oauth_client, HttpSetupError};
use actors::messages::AuthorizerPeers;
use actors::messages::Shutdown;
use actors::session::{HostLink, Session, SessionConfig};
use actors::stdin_reader::StdinReader;
use actors::token_store::TokenStore;
use machines::auth::discovery::{address_class, AddressClass};

use actors::stdout_writer::HostOutput;

/// The started core: the Session and the Authorizer wired to each other.
pub struct Core {
    /// The Session, for frames from the host and for shutdown.
    pub session: Addr<Session>,
}

/// Start the Session and the Authorizer; lines for the host go to `host`.
/// Must run inside an actix System.
pub fn start_core(settings: &Settings, host: HostLink, seed: u64) -> Result<Core, HttpSetupError> {
    let http = build_client(&settings.http)?;
    let store = TokenStore::new(settings.config_dir.clone(), settings.key.clone());
    if settings.clean {
        tracing::info!("--clean: forgetting this server's stored credentials");
        store.forget();
    }
    let authorizer = Authorizer::new(
        settings.auth.clone(),
        build_oauth_client(
            &settings.http,
            !settings.auth.allow_private_network
                && address_class(&settings.url) == AddressClass::Public,
        )?,
        store,
    )
    .start();
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
            host: settings.host.clone(),
            protocol: settings.protocol,
            cookies: settings.cookies,
            initialize_from_memory: settings.initialize_from_memory,
        },
        http,
        host,
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
    Ok(Core { session })
}

/// Start the whole proxy on this process's stdin and stdout.
pub fn start_proxy(settings: &Settings, seed: u64) -> Result<Core, HttpSetupError> {
    let stdout = HostOutput::stdout(
        actors::stdout_writer::DEFAULT_LIMIT,
        settings.max_message_bytes,
    )
    .map_err(|e| HttpSetupError::Io(format!("cannot start the stdout writer: {e}")))?;
    let core = start_core(settings, HostLink::Output(stdout), seed)?;
    StdinReader::new(
        actors::stdin_reader::stdin_input(settings.max_message_bytes),
        core.session.clone().recipient(),
        core.session.clone().recipient(),
    )
    .start();
    watch_signals(core.session.clone().recipient());
    Ok(core)
}

/// SIGINT, SIGTERM and SIGHUP (Ctrl-C, Ctrl-Break and the console closing on Windows)
/// start the orderly shutdown.
pub fn watch_signals(session: Recipient<Shutdown>) {
    actix::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            let reason = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => "SIGHUP",
            };
            session.do_send(Shutdown { reason });
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
            let (Ok(mut c), Ok(mut brk), Ok(mut close)) = (ctrl_c(), ctrl_break(), ctrl_close())
            else {
                return;
            };
            let reason = tokio::select! {
                _ = c.recv() => "Ctrl-C",
                _ = brk.recv() => "Ctrl-Break",
                _ = close.recv() => "the console closing",
            };
            session.do_send(Shutdown { reason });
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
