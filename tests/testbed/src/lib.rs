//! A loopback MCP server that speaks Streamable HTTP and, on request, the legacy HTTP+SSE
//! transport, for `mcp-remote`'s black-box tests and its README demo.
//!
//! Driving contract: [`Testbed::start`] binds `127.0.0.1` on an ephemeral port and spawns the
//! server on the current tokio runtime. It runs until [`Testbed::shutdown`] or until that
//! runtime ends. A test points the proxy at [`Testbed::url`] and then inspects what the server
//! saw with [`Testbed::requests`] or [`Testbed::wait_for`]. [`Testbed::set_config`],
//! [`Testbed::expire_sessions`] and [`Testbed::push_notification`] change the server's
//! behaviour while the proxy is talking to it.
//!
//! For the network settings a VPN brings: [`Testbed::start_tls`] serves the same over HTTPS
//! with a certificate a [`ThrowawayCa`] issued (a CA no trust store knows), recording
//! refused handshakes in [`Testbed::tls_failures`]; [`Testbed::start_with`] and a [`Listen`]
//! also put it on `::1`; [`ForwardProxy`] is a loopback HTTP proxy (`CONNECT` and
//! absolute-form) that records what a client sent through it.
//!
//! The behaviour follows the Streamable HTTP transport of MCP 2025-03-26 … 2025-11-25:
//!
//! - `POST /mcp` takes one JSON-RPC message (a batch only when the session negotiated
//!   2025-03-26) and answers with `application/json` or `text/event-stream`, as
//!   [`Config::response_mode`] says. Notifications and client responses get `202`.
//! - `GET /mcp` opens the server→client SSE stream. With `Last-Event-ID` it resumes the stream
//!   that id belongs to (a GET stream or a POST response stream).
//! - `DELETE /mcp` ends the session.
//! - A request with an unknown session id gets `404`, or with [`Config::unknown_session`] the
//!   `400` that server-everything and the TypeScript SDK's example servers answer.
//! - `/redirect-elsewhere` answers `307` to a second listener on another port (another
//!   origin), whose requests [`Testbed::elsewhere_requests`] returns; `/redirect-here`
//!   answers `307` to this origin's `/mcp`.
//!
//! With [`Config::transport`] set to [`Transport::Legacy`] or [`Transport::Both`] it also
//! speaks the HTTP+SSE transport of MCP 2024-11-05, for a client's legacy mode and its
//! transport fallback (checklist C1–C10):
//!
//! - `GET /sse` opens a session's stream; its first event is `endpoint`, carrying
//!   `/messages?sessionId=<id>` (relative, the id fresh for each stream).
//! - `POST /messages?sessionId=<id>` answers `202` and sends the response as an
//!   `event: message` on the stream; an unknown or closed session gets `404`.
//! - Legacy-only, `/mcp` is no endpoint: `POST /mcp` and `POST /sse` answer
//!   [`Config::legacy_post_status`], other methods on `/mcp` `404`.
//! - [`Testbed::drop_legacy_streams`], [`Config::legacy_endpoint_override`] and
//!   [`Config::legacy_delay_endpoint_ms`] inject its faults.
//!
//! With [`Config::auth`] set it also does OAuth 2.1 as the MCP authorization spec
//! (2025-06-18 / 2025-11-25) has it, on the same origin (checklist §D):
//!
//! - the MCP endpoints become a protected resource: no valid `Authorization: Bearer`
//!   token, `401` with a `WWW-Authenticate` challenge naming the protected resource
//!   metadata (RFC 9728), served at `/.well-known/oauth-protected-resource/mcp` and at the
//!   root; a `tools/call` whose token lacks a required scope, `403 insufficient_scope`;
//! - an authorization server answers discovery (`/.well-known/oauth-authorization-server`,
//!   OpenID variants, path-inserted for an issuer with a path), `POST /register`,
//!   `GET /authorize` (PKCE S256, approves at once with a `302`), `POST /token` and
//!   `POST /revoke`;
//! - [`Testbed::revoke_all_tokens`], [`Testbed::expire_access_tokens`] and the
//!   [`AuthConfig`] knobs inject its faults, and [`Testbed::registrations`],
//!   [`Testbed::authorize_requests`], [`Testbed::token_requests`] and
//!   [`Testbed::issued_access_tokens`] tell what the client did.
//!
//! The `mcp-browser` binary is the headless browser for that flow: given the authorization
//! URL, it follows the redirect to the client's loopback callback.
//!
//! The tools it offers are fault injectors as much as tools: see [`TOOL_NAMES`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod authserver;
pub mod chaos;
mod forward_proxy;
mod http;
mod legacy;
mod mcp;
pub mod modern;
mod record;
pub mod relay;
mod resource;
mod sse;
mod state;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use auth::{
    AsMetadataUrl, AuthConfig, AuthorizeBehaviour, AuthorizeRequest, DevicePoll, IssuedToken,
    PrmUrl, Registration, TokenRequest,
};
pub use forward_proxy::{ForwardProxy, ProxiedRequest};
pub use mcp::{SUPPORTED_PROTOCOL_VERSIONS, TOOL_NAMES};
pub use record::Recorded;
pub use relay::{Relay, RelayStats};
pub use tls::{ThrowawayCa, TlsIdentity};

/// A fresh EC P-256 key pair for `private_key_jwt`: the private key as PKCS#8 PEM
/// (for the client) and the public key as an uncompressed point (for
/// [`AuthConfig::jwt_client`]).
pub fn jwt_keypair() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("a P-256 key");
    (key.serialize_pem(), key.public_key_raw().to_vec())
}

use state::{lock, Shared};

/// How the server answers a POST that carries requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// One `application/json` body (an array for a batch).
    Json,
    /// A `text/event-stream` body with one event per response, plus whatever the request
    /// makes the server send first (progress, server→client requests).
    Sse,
    /// `Json` and `Sse` in turn, one POST after another, starting with `Json`. Exercises a
    /// client's support for both content types (checklist B4).
    Alternate,
}

/// Which MCP transports the server speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP on `/mcp` only; `/sse` and `/messages` are 404.
    #[default]
    Streamable,
    /// The legacy HTTP+SSE transport (2024-11-05) only, on `GET /sse` and
    /// `POST /messages`. `/mcp` is no endpoint, as on a server that predates Streamable HTTP.
    Legacy,
    /// Both: Streamable HTTP on `/mcp`, legacy HTTP+SSE on `/sse` and `/messages`, as on a
    /// server that keeps the old transport for old clients.
    Both,
}

/// How the server refuses a request whose `Mcp-Session-Id` it does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownSession {
    /// `404` with a JSON-RPC error `-32001 Session not found`, as the specification says
    /// ("MUST respond … with HTTP 404 Not Found", §Session Management item 3).
    #[default]
    NotFound,
    /// `400` with `{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid
    /// session ID provided"},"id":null}`, on `POST`, `GET` and `DELETE` alike, for a missing
    /// id as for an unknown one: what `@modelcontextprotocol/server-everything` and the
    /// TypeScript SDK's example servers answer after a restart lost their sessions.
    BadRequest,
}

/// What the server does. Read afresh for every request, so [`Testbed::set_config`] takes
/// effect on the next one.
#[derive(Clone, Debug)]
pub struct Config {
    /// The content type used to answer requests.
    pub response_mode: ResponseMode,
    /// Whether `initialize` issues an `Mcp-Session-Id` and later requests must carry it
    /// (400 without it, 404 when it is unknown or expired). Off: the server is stateless
    /// and ignores the header.
    pub sessions: bool,
    /// How a request carrying an unknown or expired session id is refused (with
    /// [`Config::sessions`] on).
    pub unknown_session: UnknownSession,
    /// Whether `GET /mcp` opens an SSE stream; off, it answers 405 as servers without a
    /// standalone stream do (checklist B12).
    pub get_stream: bool,
    /// Whether `DELETE /mcp` ends the session; off, it answers 405 (checklist B18).
    pub allow_delete: bool,
    /// The `retry:` value (milliseconds) sent in a priming event at the start of every SSE
    /// stream, as 2025-11-25 servers do; `None` sends no priming event and no `retry:`.
    pub sse_retry_ms: Option<u64>,
    /// When set, every non-`initialize` request to `/mcp` is answered with `307` to the
    /// other origin's `/mcp`, so a test can check what leaks across origins mid-session
    /// (checklist B20).
    pub redirect_mcp: bool,
    /// When set, every non-`initialize` request to `/mcp` is answered with this HTTP status
    /// and a JSON-RPC error body without `id` (checklist B6, B10). Legacy paths ignore it.
    pub fail_status: Option<u16>,
    /// When set, every request to `/mcp`, `/sse` and `/messages` is answered `410 Gone`: the endpoint is
    /// retired. A non-empty value is the new URL, sent as `Link: <url>; rel="successor-version"`.
    pub gone: Option<String>,
    /// The legacy HTTP+SSE paths (`/sse`, `/messages`) are retired: `410 Gone` with an
    /// RFC 9457 problem body and `Link: </mcp>; rel="successor-version"`, while `/mcp`
    /// serves as configured (a hosted server that moved to Streamable HTTP).
    pub retired_sse: bool,
    /// Every answer of the main listener sets `lb=backend-1` (a load balancer's
    /// stickiness cookie).
    pub sticky_cookie: bool,
    /// The `instructions` of the `initialize` answer instead of the usual text (a
    /// server whose answer changed since a client remembered it).
    pub instructions: Option<String>,
    /// Serve MCP 2026-07-28 only at `/mcp` (see [`modern`]): `server/discover`, `_meta`
    /// and header checks, no `initialize`, no sessions, GET and DELETE `405`.
    pub modern: bool,
    /// With [`Config::modern`]: refuse the very first POST with `-32022`, whatever it says.
    pub modern_refuse_first: bool,
    /// With [`Config::modern`]: the first `tools/list` is answered with an event stream
    /// that ends without the answer (a connection lost mid-response).
    pub modern_break_first_list: bool,
    /// Which transports are served; the legacy one is for testing a client's HTTP+SSE mode
    /// and its fallback to it.
    pub transport: Transport,
    /// The status of `POST /mcp` and `POST /sse` when only the legacy transport is served
    /// (`POST /sse` also with [`Transport::Both`]), with a plain-text body that is no
    /// JSON-RPC error. 404 by default, like a legacy Express server; tests set 400, 405 or
    /// others to check which ones make a client fall back to HTTP+SSE (checklist C7, C8).
    /// An invalid status code counts as 404.
    pub legacy_post_status: u16,
    /// When set, the `endpoint` event carries this text verbatim instead of
    /// `/messages?sessionId=<id>`, so a test can offer an endpoint on another origin
    /// ([`Testbed::elsewhere_origin`]) and check the client refuses it (checklist C2).
    pub legacy_endpoint_override: Option<String>,
    /// When set, the `endpoint` event goes out this many milliseconds (at most 600 s) after
    /// the stream opens, so a test can check a client waits for it; keepalive comments may
    /// come first.
    pub legacy_delay_endpoint_ms: Option<u64>,
    /// When set, the proxy's keep-alive pings (ids `mcp-remote-ping-N`) are taken and
    /// never answered, as by a server or a path that went silent for them alone; other
    /// pings (the proxy's reachability checks, the host's) are answered as usual.
    pub silent_keep_alive_pings: bool,
    /// When set, `POST /messages` (legacy HTTP+SSE) answers `202` labelled
    /// `Content-Type: application/json` with the body `Accepted`, which is no JSON, instead
    /// of an empty body; the real answer still comes on the session's stream, as from
    /// servers whose framework labels every body JSON.
    pub legacy_accepted_as_json: bool,
    /// Whether open streams carry a `: keepalive` comment every second. Off, a stream is
    /// silent between messages, as the TypeScript SDK's and server-everything's are.
    pub keepalives: bool,
    /// OAuth: `None` leaves every endpoint open and the OAuth paths `404`, as on a server
    /// without authorization; `Some` makes the MCP endpoints a protected resource and
    /// serves an authorization server on the same origin (checklist §D).
    pub auth: Option<AuthConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            response_mode: ResponseMode::Sse,
            sessions: true,
            unknown_session: UnknownSession::NotFound,
            get_stream: true,
            allow_delete: true,
            sse_retry_ms: Some(200),
            redirect_mcp: false,
            fail_status: None,
            gone: None,
            modern: false,
            sticky_cookie: false,
            instructions: None,
            retired_sse: false,
            modern_refuse_first: false,
            modern_break_first_list: false,
            transport: Transport::Streamable,
            legacy_post_status: 404,
            legacy_endpoint_override: None,
            legacy_delay_endpoint_ms: None,
            legacy_accepted_as_json: false,
            keepalives: true,
            silent_keep_alive_pings: false,
            auth: None,
        }
    }
}

/// Where and how a testbed listens: see [`Testbed::start_with`].
#[derive(Clone, Debug)]
pub struct Listen {
    /// The loopback address of both listeners: `127.0.0.1` by default, `::1` for a server
    /// reachable over IPv6 only. The URLs carry it (`http://[::1]:PORT/mcp`).
    pub ip: IpAddr,
    /// The main listener's port; 0 (the default) for an ephemeral one. The "elsewhere"
    /// listener always takes an ephemeral port.
    pub port: u16,
    /// `Some`: both listeners speak HTTPS with this certificate and key, and the URLs are
    /// `https://…`. `None` (the default): plain HTTP.
    pub tls: Option<TlsIdentity>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            tls: None,
        }
    }
}

/// A handle on a running testbed. Cloning it gives another handle on the same server.
#[derive(Clone)]
pub struct Testbed {
    /// Everything the server tasks share; the handle reads and steers it.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Testbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testbed").field("url", &self.url()).finish()
    }
}

impl Testbed {
    /// Binds `127.0.0.1` on an ephemeral port (and a second one for the "elsewhere" origin)
    /// and spawns the server on the current tokio runtime.
    pub async fn start(config: Config) -> std::io::Result<Testbed> {
        Self::start_on_port(config, 0).await
    }

    /// Like [`Testbed::start`], on a given port of `127.0.0.1` (0 for an ephemeral one).
    /// The "elsewhere" listener always takes an ephemeral port.
    pub async fn start_on_port(config: Config, port: u16) -> std::io::Result<Testbed> {
        Self::start_with(
            config,
            Listen {
                port,
                ..Listen::default()
            },
        )
        .await
    }

    /// Like [`Testbed::start`], over HTTPS on `127.0.0.1` with this certificate and key
    /// (for example one from [`ThrowawayCa::issue`] for `127.0.0.1`). The URLs are
    /// `https://127.0.0.1:PORT/…`; a failed handshake is recorded in
    /// [`Testbed::tls_failures`].
    pub async fn start_tls(config: Config, identity: &TlsIdentity) -> std::io::Result<Testbed> {
        Self::start_with(
            config,
            Listen {
                tls: Some(identity.clone()),
                ..Listen::default()
            },
        )
        .await
    }

    /// Starts a testbed as `listen` says: address, port, plain HTTP or HTTPS. An address
    /// that is not loopback is refused: the testbed never listens beyond this machine.
    pub async fn start_with(config: Config, listen: Listen) -> std::io::Result<Testbed> {
        if !listen.ip.is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the testbed listens on loopback addresses only",
            ));
        }
        let tls = match &listen.tls {
            Some(identity) => Some(tokio_rustls::TlsAcceptor::from(identity.server_config()?)),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let main = TcpListener::bind(SocketAddr::from((listen.ip, listen.port))).await?;
        let elsewhere = TcpListener::bind(SocketAddr::from((listen.ip, 0))).await?;
        let origin = format!("{scheme}://{}", main.local_addr()?);
        let elsewhere_origin = format!("{scheme}://{}", elsewhere.local_addr()?);
        let shared = Arc::new(Shared::new(config, origin, elsewhere_origin));
        tokio::spawn(http::serve(
            main,
            shared.clone(),
            http::Role::Main,
            tls.clone(),
        ));
        tokio::spawn(http::serve(
            elsewhere,
            shared.clone(),
            http::Role::Elsewhere,
            tls,
        ));
        Ok(Testbed { shared })
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp` (`https://` in HTTPS mode, `[::1]`
    /// on IPv6).
    pub fn url(&self) -> String {
        format!("{}/mcp", self.shared.origin)
    }

    /// The legacy HTTP+SSE stream URL, `http://127.0.0.1:PORT/sse` (served with
    /// [`Transport::Legacy`] and [`Transport::Both`]).
    pub fn sse_url(&self) -> String {
        format!("{}/sse", self.shared.origin)
    }

    /// `http://127.0.0.1:PORT`, without a path.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// The port the MCP endpoint listens on.
    pub fn port(&self) -> u16 {
        self.shared
            .origin
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0)
    }

    /// A URL on the main server that answers every request with `307` to
    /// [`Testbed::elsewhere_origin`]`/mcp`.
    pub fn redirect_url(&self) -> String {
        format!("{}/redirect-elsewhere", self.shared.origin)
    }

    /// The origin of the second listener, the target of every redirect.
    pub fn elsewhere_origin(&self) -> String {
        self.shared.elsewhere_origin.clone()
    }

    /// The requests a [`Config::modern`] server answered with a result, in order.
    pub fn modern_calls(&self) -> Vec<serde_json::Value> {
        state::lock(&self.shared.modern_calls).clone()
    }

    /// The filters of the `subscriptions/listen` streams of a [`Config::modern`] server
    /// still open.
    pub fn listening(&self) -> Vec<serde_json::Value> {
        let mut listeners = state::lock(&self.shared.listeners);
        listeners.retain(|(_, _, tx)| !tx.is_closed());
        listeners
            .iter()
            .map(|(_, filter, _)| filter.clone())
            .collect()
    }

    /// How many `slow` calls of a [`Config::modern`] server lost their client before the answer.
    pub fn modern_cancelled(&self) -> u64 {
        self.shared
            .modern_cancelled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every HTTP request the main server received, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.snapshot()
    }

    /// Every HTTP request the "elsewhere" listener received, in arrival order.
    pub fn elsewhere_requests(&self) -> Vec<Recorded> {
        self.shared.elsewhere_log.snapshot()
    }

    /// Why each failed TLS handshake failed (HTTPS mode), in order, as rustls put it: a
    /// client that refuses the certificate shows here as an alert it sent, such as
    /// `received fatal alert: UnknownCA`. Empty for a plain HTTP testbed.
    pub fn tls_failures(&self) -> Vec<String> {
        lock(&self.shared.tls_failures).clone()
    }

    /// Forgets the requests recorded so far (on both listeners).
    pub fn clear_requests(&self) {
        self.shared.log.clear();
        self.shared.elsewhere_log.clear();
    }

    /// The ids of the Streamable HTTP sessions that are currently valid.
    pub fn session_ids(&self) -> Vec<String> {
        lock(&self.shared.registry).session_ids()
    }

    /// The ids of the legacy HTTP+SSE sessions whose stream is open.
    pub fn legacy_session_ids(&self) -> Vec<String> {
        lock(&self.shared.legacy).ids()
    }

    /// The protocol version a live session (Streamable HTTP, or legacy after its
    /// `initialize`) negotiated in `initialize`.
    pub fn negotiated_version(&self, session_id: &str) -> Option<String> {
        let streamable = lock(&self.shared.registry).protocol_version(Some(session_id));
        streamable.or_else(|| lock(&self.shared.legacy).protocol_version(session_id))
    }

    /// Makes every current Streamable HTTP session id unknown: its next use gets 404, as
    /// after a server restart (checklist B9). Open streams of those sessions end. Legacy
    /// sessions are left alone: see [`Testbed::drop_legacy_streams`].
    pub fn expire_sessions(&self) {
        lock(&self.shared.registry).expire_all();
    }

    /// Closes every open legacy HTTP+SSE stream now, as after a network drop or a server
    /// restart (checklist C5). Their sessions become unknown, so later POSTs to their
    /// endpoints get 404, and requests still in flight on them are never answered.
    pub fn drop_legacy_streams(&self) {
        lock(&self.shared.legacy).drop_all();
    }

    /// A copy of the configuration in force.
    pub fn config(&self) -> Config {
        lock(&self.shared.config).clone()
    }

    /// Changes the configuration; the next request sees the change.
    pub fn set_config(&self, f: impl FnOnce(&mut Config)) {
        f(&mut lock(&self.shared.config));
    }

    /// Changes the OAuth configuration, turning OAuth on with [`AuthConfig::default`] first
    /// when it is off; the next request sees the change.
    pub fn set_auth(&self, f: impl FnOnce(&mut AuthConfig)) {
        f(lock(&self.shared.config)
            .auth
            .get_or_insert_with(AuthConfig::default));
    }

    /// Makes the resource accept the access tokens `other`'s authorization server
    /// issues, as a server that moved to that authorization server would.
    pub fn trust_tokens_of(&self, other: &Testbed) {
        lock(&self.shared.trusted).push(other.shared.clone());
    }

    /// The authorization server's issuer: the origin plus [`AuthConfig::issuer_path`] (the
    /// bare origin while OAuth is off).
    pub fn issuer(&self) -> String {
        match &self.shared.config().auth {
            Some(auth) => auth.issuer(&self.shared.origin),
            None => self.shared.origin.clone(),
        }
    }

    /// The protected resource metadata URL a `401` from `/mcp` names, as configured now;
    /// `None` while OAuth is off or when the challenge names none.
    pub fn resource_metadata_url(&self) -> Option<String> {
        let auth = self.shared.config().auth?;
        resource::mcp_metadata_url(&self.shared.origin, &auth)
    }

    /// Revokes every access and refresh token issued so far: the next request with one
    /// gets `401 invalid_token`, the next refresh `400 invalid_grant`, as after the user
    /// revoked the app. Open SSE streams are not cut.
    pub fn revoke_all_tokens(&self) {
        lock(&self.shared.auth).revoke_all();
    }

    /// Makes every access token issued so far expired: the next request with one gets
    /// `401 invalid_token`, while refresh tokens still work (checklist D30, D31).
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.auth).expire_access();
    }

    /// Issues a valid access token without any OAuth flow, for tests that need a bearer
    /// (such as a static `Authorization` header) but are not about getting one. Its client
    /// is `minted`, its lifetime [`AuthConfig::access_ttl_secs`] (an hour with OAuth off).
    pub fn mint_access_token(&self, scope: Option<&str>) -> String {
        let ttl = self
            .shared
            .config()
            .auth
            .map_or(3600, |auth| auth.access_ttl_secs);
        let issue = auth::Issue {
            client_id: "minted",
            scope: scope.map(str::to_owned),
            resource: None,
            grant_type: "minted",
            with_refresh: false,
            grant: None,
        };
        lock(&self.shared.auth).issue(issue, ttl).access_token
    }

    /// Every `POST /register`, in arrival order.
    pub fn registrations(&self) -> Vec<Registration> {
        lock(&self.shared.auth).registrations.clone()
    }

    /// Every `GET /authorize`, in arrival order: a browser opening the authorization URL.
    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        lock(&self.shared.auth).authorizations.clone()
    }

    /// How many `GET /authorize` requests arrived: how often a user was sent to sign in.
    pub fn authorize_count(&self) -> usize {
        lock(&self.shared.auth).authorizations.len()
    }

    /// Every `POST /token`, in arrival order, with its outcome.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.shared.auth).token_requests.clone()
    }

    /// Every token exchange the identity provider (`/idp/token`) got, in order.
    pub fn idp_requests(&self) -> Vec<TokenRequest> {
        lock(&self.shared.auth).idp_requests.clone()
    }

    /// Every poll of the token endpoint with a device code, in order.
    pub fn device_polls(&self) -> Vec<DevicePoll> {
        lock(&self.shared.auth).device_polls.clone()
    }

    /// How many times the `count` tool (or `slow` with a `nonce`) ran for `nonce` (0 if
    /// never).
    pub fn executions(&self, nonce: &str) -> u64 {
        lock(&self.shared.executions)
            .get(nonce)
            .copied()
            .unwrap_or(0)
    }

    /// How many times the `count` tool (or `slow` with a `nonce`) ran, for every nonce it
    /// saw.
    pub fn execution_counts(&self) -> std::collections::HashMap<String, u64> {
        lock(&self.shared.executions).clone()
    }

    /// Every token response that issued tokens (and every minted token), in order.
    pub fn issued_access_tokens(&self) -> Vec<IssuedToken> {
        lock(&self.shared.auth).issued.clone()
    }

    /// Waits until `pred` holds for the main server's request log, or `timeout` passes.
    /// Returns whether it held. `pred` runs with the log locked: it must not call back into
    /// the testbed.
    pub async fn wait_for(&self, pred: impl Fn(&[Recorded]) -> bool, timeout: Duration) -> bool {
        self.shared.log.wait_for(pred, timeout).await
    }

    /// Sends a server→client message (a notification or a request) on each Streamable
    /// session's newest open GET stream and on every open legacy stream. When none of the
    /// transport's streams is open, the message waits for the next one: the next GET
    /// stream, or with [`Transport::Legacy`] the next legacy stream (after its `endpoint`).
    pub fn push_notification(&self, msg: serde_json::Value) {
        let legacy_only = self.shared.config().transport == Transport::Legacy;
        let mut legacy = lock(&self.shared.legacy);
        let delivered = legacy.push_everywhere(&msg);
        if legacy_only {
            if !delivered {
                legacy.queue(msg);
            }
            return;
        }
        drop(legacy);
        lock(&self.shared.registry).push_everywhere(&msg);
    }

    /// Stops accepting connections, drops the open ones and ends every stream.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}
