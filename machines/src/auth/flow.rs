//! One sign-in or one refresh, from taking the cross-process lock to saving the
//! tokens, as a machine without IO: it says what to fetch, bind, post and save, and
//! reads what came back. The Authorizer performs each effect and feeds the result in
//! (after every input, drain every effect), so every choice — which authorization
//! server, which client, which credentials go where, what a failure means for what
//! is stored — is made here and tested here.
//!
//! ```text
//!            refresh                                  sign-in
//!               │                                        │
//!               ▼                                        ▼
//!         expecting_lock ─────── another copy left ──► finished (its tokens)
//!               │                  usable tokens
//!               ▼
//!   expecting_server_metadata ◄──── (the issuer that issued the tokens: no discovery)
//!               │                                        │
//!               ▼                                        ▼
//!      expecting_token (refresh)        expecting_resource_metadata → expecting_server_metadata
//!        │ definitive no: forget          → binding_callback → expecting_registration?
//!        │ transient: keep                → awaiting_callback → expecting_token (code)
//!        ▼                                                       │
//!    finished ◄──────────────────────────────────────────────────┘
//! ```
//!
//! What it holds to (MCP authorization 2025-11-25 §Security Considerations, RFC 9700
//! §4.4 "mix-up", RFC 8414 §3.3, RFC 9207, RFC 6749 §5.2):
//!
//! - **Credentials are bound to their issuer.** A refresh token goes only to the
//!   authorization server that issued it (the tokens' `issuer`), found from that
//!   issuer's own metadata, never from what the MCP server names now. A stored client
//!   is used only at the issuer it registered at; a client without an issuer (older
//!   files) is never sent anywhere, and a new registration replaces it. A static client
//!   belongs to the issuer it names, else to the one the stored tokens came from; a
//!   change is an error, never a silent send.
//! - **Only a definitive answer forgets.** `invalid_grant` forgets the tokens,
//!   `invalid_client` / `unauthorized_client` the registration too, and only the files
//!   read under the lock in this flow; a network failure, a 5xx, a time-out or a busy
//!   lock keeps everything stored.
//! - **One browser for many copies.** Under the lock, tokens another copy stored are
//!   used when fresh, or refreshed when not, before a sign-in is considered.
//! - **Every discovered URL is checked** before it is fetched: https unless loopback or
//!   `--allow-http`, and no private, link-local or cloud-metadata address unless the
//!   MCP server is itself on such a network or `--allow-private-network` is given.

use super::callback::AuthorizationResponse;
use super::callback_port::{CallbackPort, PortEffect, PortEvent, PortOutbox};
use super::challenge::BearerChallenge;
use super::device::{self, DeviceAuthorization, DeviceError, Poll};
use super::discovery::{self, AuthServerMetadata, DiscoveryError, ProtectedResource, TokenAuth};
use super::registration::{self, ClientInfo};
use super::scope;
use super::token::{self, StoredTokens, TokenError, TokenResponse};
use super::AuthError;
use statig::blocking::{IntoStateMachineExt, StateMachine};
use std::collections::VecDeque;
use std::time::Duration;
use url::Url;

/// Refresh this long before the access token expires; tokens another copy stored
/// are "fresh" when they stay good at least this long.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// How the RFC 8707 `resource` parameter is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceParam {
    /// The protected resource metadata's `resource`, else the server URL.
    Auto,
    /// `--resource`.
    Fixed(String),
    /// `--disable-resource-parameter`.
    Disabled,
}

/// What sign-in takes from the command line.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// The MCP server URL: where discovery starts and what the tokens are for.
    pub mcp_url: Url,
    /// `--allow-http`: plain http authorization endpoints on remote hosts.
    pub allow_http: bool,
    /// `--allow-private-network`: discovered URLs may point at private or
    /// link-local addresses even when the MCP server is public.
    pub allow_private_network: bool,
    /// `--static-oauth-client-info`: a pre-registered client (its `issuer`, when
    /// given, is the only authorization server it is used with).
    pub static_client: Option<ClientInfo>,
    /// `--static-oauth-client-metadata`: merged into the registration request.
    pub static_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `--client-metadata-url`: a client ID metadata document.
    pub client_metadata_url: Option<String>,
    /// `--resource` / `--disable-resource-parameter`.
    pub resource: ResourceParam,
    /// `--authorize-param`: extra query parameters of the authorization URL.
    pub authorize_params: Vec<(String, String)>,
    /// `--host`: host of the redirect URI.
    pub redirect_host: String,
    /// `--callback-path`.
    pub callback_path: String,
    /// The positional callback port.
    pub callback_port: Option<u16>,
    /// `--auth-timeout`: bounds the wait for the browser and for the lock.
    pub auth_timeout: Duration,
    /// `--client-credentials`: no browser, the client's own grant.
    pub client_credentials: bool,
    /// `client_name` for registration.
    pub client_name: String,
    /// `--auth-success-url`: where the browser is sent (303) after a callback with a code.
    pub success_url: Option<Url>,
    /// `--use-id-token`: the OIDC ID token is the bearer (its `exp` its expiry).
    pub use_id_token: bool,
    /// `--token-endpoint` (with `--client-credentials`): the token endpoint, known
    /// without discovery; its origin is the issuer the credentials are bound to.
    pub token_endpoint: Option<Url>,
    /// `--client-key`: the client authenticates with a JWT signed by this key
    /// (`private_key_jwt`, RFC 7523) instead of a secret.
    pub client_key: Option<ClientKey>,
    /// When the device authorization grant (RFC 8628) replaces the browser.
    pub device: DeviceChoice,
    /// Enterprise-managed authorization: the identity provider's token exchange
    /// instead of a browser.
    pub enterprise: Option<Enterprise>,
}

/// RFC 8693 token type of an Identity Assertion JWT Authorization Grant.
pub const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// RFC 7523 §2.1: the JWT bearer grant.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Enterprise-managed authorization (the MCP extension
/// `io.modelcontextprotocol/enterprise-managed-authorization`): the user's identity
/// assertion (an ID token from the company's identity provider) is exchanged there
/// (RFC 8693) for an Identity Assertion JWT Authorization Grant (ID-JAG) for the MCP
/// server's authorization server, which redeems it (RFC 7523 JWT bearer grant) with
/// the pre-registered client. No browser.
#[derive(Clone)]
pub struct Enterprise {
    /// `--idp-token-endpoint`.
    pub idp_token_endpoint: Url,
    /// `--idp-client-id`: the client the exchange is made as, at the identity provider.
    pub idp_client_id: Option<String>,
    /// `--idp-client-secret`.
    pub idp_client_secret: Option<String>,
    /// `--identity-assertion`: where the assertion comes from (read at every sign-in).
    pub assertion: AssertionSource,
}

impl std::fmt::Debug for Enterprise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enterprise")
            .field("idp_token_endpoint", &self.idp_token_endpoint.as_str())
            .field("idp_client_id", &self.idp_client_id)
            .finish_non_exhaustive()
    }
}

/// An identity assertion as read (a secret: never shown).
#[derive(Clone, PartialEq, Eq)]
pub struct Assertion(pub String);

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Assertion([redacted])")
    }
}

/// Where the identity assertion comes from.
#[derive(Clone)]
pub enum AssertionSource {
    /// Given on the command line (or from an environment variable).
    Value(std::sync::Arc<str>),
    /// A file the company's tooling keeps fresh, read at every sign-in.
    File(std::path::PathBuf),
}

/// When a sign-in uses the device authorization grant instead of the loopback browser flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Always the browser.
    #[default]
    Never,
    /// When the authorization server offers it (no usable browser here: SSH, no display).
    WhenOffered,
    /// Always (`--device-code`); an error when the server does not offer it.
    Always,
}

/// A client's private key (PKCS#8 PEM, P-256 or RSA), for `private_key_jwt`. The
/// flow only passes it on: the driver signs.
#[derive(Clone)]
pub struct ClientKey(pub std::sync::Arc<str>);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey([redacted])")
    }
}

/// What a flow is for.
#[derive(Debug, Clone)]
pub enum FlowStart {
    /// Redeem the refresh token of these tokens (the ones in use).
    Refresh {
        /// The tokens in use when the refresh was asked for.
        held: StoredTokens,
    },
    /// Get tokens, through the browser (or the client-credentials grant).
    SignIn {
        /// The latest challenge: where the metadata is, which scope.
        challenge: BearerChallenge,
        /// A step-up scope (403 `insufficient_scope`): stored tokens will not do.
        step_up: Option<String>,
        /// The access token the server just refused: stored tokens equal to it will not do.
        refused: Option<String>,
    },
}

/// The randomness of one sign-in, made by the driver from the OS generator
/// (RFC 7636 §4.1, OAuth 2.1 §7.12): the machine itself has none.
#[derive(Clone, PartialEq, Eq)]
pub struct FlowSecrets {
    /// PKCE `code_verifier`.
    pub code_verifier: String,
    /// Its S256 `code_challenge`.
    pub code_challenge: String,
    /// The single-use `state`.
    pub state: String,
}

impl std::fmt::Debug for FlowSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSecrets([redacted])")
    }
}

/// An HTTP answer, read whole within its size cap.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body (may hold secrets: never shown).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpAnswer({}, {} bytes)", self.status, self.body.len())
    }
}

/// What came back for a metadata document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 2xx with this body.
    Document(Vec<u8>),
    /// A 4xx: not here, try the next candidate.
    NotFound,
    /// Another status, an oversized body, or the network.
    Failed(AuthError),
}

/// Inputs: the result of the effect performed last.
#[derive(Debug, Clone)]
// A flow takes a dozen steps: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum FlowInput {
    /// The lock is held; this is what the store held when it was taken.
    LockTaken {
        /// The stored tokens, read under the lock.
        tokens: Option<StoredTokens>,
        /// The stored client registration, read under the lock.
        client: Option<ClientInfo>,
        /// Milliseconds since the epoch.
        now_ms: u64,
    },
    /// The lock could not be had (another copy held it too long, or the folder failed).
    LockFailed(AuthError),
    /// The answer for the metadata URL asked for.
    MetadataFetched(Fetched),
    /// The callback listener is bound on this port.
    CallbackBound(u16),
    /// The callback port could not be bound.
    CallbackBindFailed(String),
    /// The registration endpoint's answer.
    Registered(Result<HttpAnswer, AuthError>),
    /// The browser came back to the listener with a valid `state` (or the wait ended).
    CallbackReceived(Result<AuthorizationResponse, AuthError>),
    /// The device authorization endpoint's answer, received at `now_ms`.
    DeviceCodeAnswered {
        /// The answer, or why there was none.
        answer: Result<HttpAnswer, AuthError>,
        /// Milliseconds since the epoch (the code's lifetime counts from here).
        now_ms: u64,
    },
    /// The identity assertion, read (or why not).
    AssertionRead(Result<Assertion, AuthError>),
    /// The wait asked for is over.
    Waited {
        /// Milliseconds since the epoch.
        now_ms: u64,
    },
    /// The token endpoint's answer, received at `now_ms`.
    TokenAnswered {
        /// The answer, or why there was none.
        answer: Result<HttpAnswer, AuthError>,
        /// Milliseconds since the epoch (for `expires_at`).
        now_ms: u64,
    },
}

impl FlowEffect {
    /// The effect's name and what the trace may show of it: metadata and endpoint
    /// URLs, the port, the grant type, whether tokens came with a refresh token, the
    /// error. Never a token, a secret, a code or a verifier. The authorization URL
    /// is shown whole (it carries only the PKCE challenge and a one-time `state`):
    /// a user whose host hides stderr finds it there.
    pub fn trace(&self) -> (&'static str, Option<String>) {
        match self {
            FlowEffect::TakeLock => ("TakeLock", None),
            FlowEffect::FetchMetadata(url) => {
                ("FetchMetadata", Some(crate::trace::redact_url(url)))
            }
            FlowEffect::BindCallback(0) => ("BindCallback", Some("any free port".into())),
            FlowEffect::BindCallback(port) => ("BindCallback", Some(format!("port {port}"))),
            FlowEffect::Register { endpoint, .. } => ("Register", Some(endpoint_text(endpoint))),
            FlowEffect::SaveClient(client) => (
                "SaveClient",
                Some(match &client.issuer {
                    Some(issuer) => format!("registered at {issuer}"),
                    None => "registration without an issuer".into(),
                }),
            ),
            FlowEffect::AwaitCallback { url, .. } => ("AwaitCallback", Some(url.to_string())),
            FlowEffect::RequestToken(request) => {
                let grant = request
                    .params
                    .iter()
                    .find(|(k, _)| *k == "grant_type")
                    .map_or("?", |(_, v)| v.as_str());
                (
                    "RequestToken",
                    Some(format!("{grant} at {}", endpoint_text(&request.endpoint))),
                )
            }
            FlowEffect::RequestDeviceCode(request) => {
                ("RequestDeviceCode", Some(endpoint_text(&request.endpoint)))
            }
            FlowEffect::ShowDeviceCode(d) => (
                "ShowDeviceCode",
                Some(format!(
                    "enter {} at {} within {} s",
                    d.user_code,
                    d.verification_uri,
                    d.lifetime.as_secs()
                )),
            ),
            FlowEffect::Wait(d) => ("Wait", Some(format!("{} ms", d.as_millis()))),
            FlowEffect::ReadAssertion => ("ReadAssertion", None),
            FlowEffect::SaveTokens(tokens) => ("SaveTokens", Some(tokens_text(tokens))),
            FlowEffect::Forget { tokens, client } => (
                "Forget",
                Some(
                    match (tokens, client) {
                        (true, true) => "tokens and client registration",
                        (true, false) => "tokens",
                        (false, true) => "client registration",
                        (false, false) => "nothing",
                    }
                    .into(),
                ),
            ),
            FlowEffect::Finished(Ok(_)) => ("Finished", Some("tokens ready".into())),
            FlowEffect::Finished(Err(e)) => ("Finished", Some(e.to_string())),
        }
    }
}

impl FlowInput {
    /// The input's name and what the trace may show of it (statuses, sizes, what
    /// was stored, errors; never a body, a token or a code).
    pub fn trace(&self) -> (&'static str, Option<String>) {
        let answer = |a: &Result<HttpAnswer, AuthError>| match a {
            Ok(a) => format!("HTTP {}, {} bytes", a.status, a.body.len()),
            Err(e) => e.to_string(),
        };
        match self {
            FlowInput::LockTaken { tokens, client, .. } => (
                "LockTaken",
                Some(format!(
                    "stored tokens: {}; stored client: {}",
                    tokens.as_ref().map_or("none".into(), tokens_text),
                    match client {
                        Some(c) => c
                            .issuer
                            .as_deref()
                            .map_or("yes, issuer unknown".into(), |i| format!("yes, of {i}")),
                        None => "none".into(),
                    }
                )),
            ),
            FlowInput::LockFailed(e) => ("LockFailed", Some(e.to_string())),
            FlowInput::MetadataFetched(Fetched::Document(body)) => (
                "MetadataFetched",
                Some(format!("a document of {} bytes", body.len())),
            ),
            FlowInput::MetadataFetched(Fetched::NotFound) => {
                ("MetadataFetched", Some("not there (4xx)".into()))
            }
            FlowInput::MetadataFetched(Fetched::Failed(e)) => {
                ("MetadataFetched", Some(e.to_string()))
            }
            FlowInput::CallbackBound(port) => ("CallbackBound", Some(format!("port {port}"))),
            FlowInput::CallbackBindFailed(why) => ("CallbackBindFailed", Some(why.clone())),
            FlowInput::Registered(a) => ("Registered", Some(answer(a))),
            FlowInput::CallbackReceived(Ok(_)) => {
                ("CallbackReceived", Some("an authorization code".into()))
            }
            FlowInput::CallbackReceived(Err(e)) => ("CallbackReceived", Some(e.to_string())),
            FlowInput::DeviceCodeAnswered { answer: a, .. } => {
                ("DeviceCodeAnswered", Some(answer(a)))
            }
            FlowInput::Waited { .. } => ("Waited", None),
            FlowInput::AssertionRead(Ok(_)) => ("AssertionRead", Some("an assertion".into())),
            FlowInput::AssertionRead(Err(e)) => ("AssertionRead", Some(e.to_string())),
            FlowInput::TokenAnswered { answer: a, .. } => ("TokenAnswered", Some(answer(a))),
        }
    }
}

/// An endpoint as the trace shows it: parsed and redacted, or said to be unusable.
fn endpoint_text(endpoint: &str) -> String {
    Url::parse(endpoint).map_or("an unparsable URL".into(), |u| crate::trace::redact_url(&u))
}

/// Stored tokens as the trace shows them: expiry, refresh token, issuer.
fn tokens_text(tokens: &StoredTokens) -> String {
    format!(
        "access token{}{}, {}",
        tokens.expires_at.map_or(String::new(), |ms| format!(
            " expiring at {ms} ms since 1970"
        )),
        if tokens.refresh_token.is_some() {
            " with a refresh token"
        } else {
            " without a refresh token"
        },
        tokens
            .issuer
            .as_deref()
            .map_or("issuer unknown".into(), |i| format!("issued by {i}")),
    )
}

/// A token request, ready to send: the driver only encodes it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The issuer's token endpoint.
    pub endpoint: String,
    /// How the client authenticates (OAuth 2.1 §2.4).
    pub auth: TokenAuth,
    /// The client id.
    pub client_id: String,
    /// The client secret, for `client_secret_basic` / `client_secret_post`.
    pub client_secret: Option<String>,
    /// The form parameters, without client authentication.
    pub params: Vec<(&'static str, String)>,
    /// The `aud` of a `private_key_jwt` assertion: the authorization server's issuer.
    pub audience: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grant = self
            .params
            .iter()
            .find(|(k, _)| *k == "grant_type")
            .map(|(_, v)| v.as_str());
        f.debug_struct("TokenRequest")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("grant_type", &grant)
            .finish_non_exhaustive()
    }
}

/// Outputs, performed in order.
#[derive(Debug, Clone)]
pub enum FlowEffect {
    /// Take the cross-process lock (waiting at most `--auth-timeout`), then read the
    /// stored tokens and client under it: answer [`FlowInput::LockTaken`].
    TakeLock,
    /// GET this metadata document: answer [`FlowInput::MetadataFetched`].
    FetchMetadata(Url),
    /// Bind the loopback callback listener on this port (0: any): answer
    /// [`FlowInput::CallbackBound`] or [`FlowInput::CallbackBindFailed`].
    BindCallback(u16),
    /// POST this JSON to the registration endpoint: answer [`FlowInput::Registered`].
    Register {
        /// The issuer's registration endpoint.
        endpoint: String,
        /// The RFC 7591 client metadata.
        body: serde_json::Value,
    },
    /// Store this client registration.
    SaveClient(ClientInfo),
    /// Send the user to this URL and wait for the listener's callback carrying
    /// `state`: answer [`FlowInput::CallbackReceived`].
    AwaitCallback {
        /// The authorization URL (holds no secret: PKCE sends only the challenge).
        url: Url,
        /// The `state` the callback must carry.
        state: String,
    },
    /// POST to the token endpoint: answer [`FlowInput::TokenAnswered`].
    RequestToken(TokenRequest),
    /// POST to the device authorization endpoint (RFC 8628 §3.1), with the
    /// client's authentication as at the token endpoint: answer
    /// [`FlowInput::DeviceCodeAnswered`].
    RequestDeviceCode(TokenRequest),
    /// Tell the user where to go and which code to enter (and open
    /// `verification_uri_complete` where a browser can be used). No answer.
    ShowDeviceCode(DeviceAuthorization),
    /// Wait this long: answer [`FlowInput::Waited`].
    Wait(Duration),
    /// Read the identity assertion (`--identity-assertion`): answer
    /// [`FlowInput::AssertionRead`].
    ReadAssertion,
    /// Store these tokens.
    SaveTokens(StoredTokens),
    /// The authorization server said these stored credentials are dead (read under
    /// this flow's lock): remove them.
    Forget {
        /// The tokens file.
        tokens: bool,
        /// The client registration file.
        client: bool,
    },
    /// The flow is over: release the lock and the listener.
    Finished(Result<StoredTokens, AuthError>),
}

/// What the flow waits for.
#[derive(Debug)]
enum Expect {
    Lock,
    ResourceMetadata {
        candidates: VecDeque<Url>,
    },
    /// MCP 2025-03-26: metadata at the server's origin.
    LegacyMetadata,
    ServerMetadata {
        issuer: String,
        candidates: VecDeque<Url>,
        purpose: MetadataFor,
    },
    Callback,
    Registration {
        method: TokenAuth,
        /// A client for the device grant (no redirect URI).
        device: bool,
    },
    AuthorizationCode,
    DeviceCode,
    DeviceWait(DevicePoll),
    Assertion,
    Token(TokenFor),
    Done,
}

/// A device code being polled for.
#[derive(Debug)]
struct DevicePoll {
    device_code: String,
    interval: Duration,
    lifetime: Duration,
    deadline_ms: u64,
}

/// Why the authorization server metadata is being fetched.
#[derive(Debug)]
// A flow takes a dozen steps: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
enum MetadataFor {
    /// To refresh these tokens at their issuer.
    Refresh {
        tokens: StoredTokens,
        client: ClientInfo,
        /// The client is the stored registration (an `invalid_client` forgets it).
        stored_client: bool,
    },
    /// A sign-in, after the protected resource metadata.
    SignIn {
        resource: Option<String>,
        prm_scopes: Option<Vec<String>>,
    },
}

/// What a token request was for.
#[derive(Debug)]
// A flow takes a dozen steps: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
enum TokenFor {
    Refresh {
        old: StoredTokens,
        /// The stored registration was used (an `invalid_client` forgets it).
        stored_client: bool,
    },
    Code,
    ClientCredentials,
    Device(DevicePoll),
    /// RFC 8693 at the identity provider: the answer is an ID-JAG.
    Exchange,
    /// RFC 7523 at the MCP server's authorization server, with the ID-JAG.
    JwtBearer,
}

/// What discovery settled for a sign-in.
#[derive(Debug, Clone)]
struct Discovered {
    issuer: String,
    meta: AuthServerMetadata,
    resource: Option<String>,
    scope: Option<String>,
}

/// One sign-in or refresh.
pub struct Flow {
    options: AuthOptions,
    start: FlowStart,
    secrets: Option<FlowSecrets>,
    expect: Expect,
    effects: VecDeque<FlowEffect>,
    /// What the store held under the lock.
    disk_tokens: Option<StoredTokens>,
    disk_client: Option<ClientInfo>,
    /// A sign-in tried the tokens another copy left first; on failure it goes on to sign in.
    then_sign_in: bool,
    discovered: Option<Discovered>,
    /// The device authorization endpoint, when the device grant replaces the browser.
    device_endpoint: Option<String>,
    port: Option<StateMachine<CallbackPort>>,
    redirect_uri: Option<String>,
    client: Option<(ClientInfo, bool)>,
    /// When the lock was taken (milliseconds since the epoch).
    now_ms: u64,
    /// [`FlowEffect::Finished`] was emitted: nothing follows it.
    finished: bool,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl Flow {
    /// A flow; its first effect is [`FlowEffect::TakeLock`]. `secrets` are used by a
    /// browser sign-in only.
    pub fn new(options: AuthOptions, start: FlowStart, secrets: FlowSecrets) -> Flow {
        let mut flow = Flow {
            options,
            start,
            secrets: Some(secrets),
            expect: Expect::Lock,
            effects: VecDeque::new(),
            disk_tokens: None,
            disk_client: None,
            then_sign_in: false,
            discovered: None,
            device_endpoint: None,
            port: None,
            redirect_uri: None,
            client: None,
            now_ms: 0,
            finished: false,
        };
        flow.effects.push_back(FlowEffect::TakeLock);
        flow
    }

    /// The next effect to perform, in order.
    pub fn poll_effect(&mut self) -> Option<FlowEffect> {
        self.effects.pop_front()
    }

    /// What the flow waits for, in snake case (`lock`, `server_metadata`,
    /// `authorization_code`…): the state of the sign-in in the trace.
    pub fn expecting(&self) -> String {
        crate::trace::snake(&crate::trace::variant(&self.expect))
    }

    /// Whether the flow has finished.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feed the result of the effect performed last.
    pub fn handle(&mut self, input: FlowInput) {
        let result = self.step(input);
        if let Err(error) = result {
            self.finish(Err(error));
        }
    }

    fn finish(&mut self, result: Result<StoredTokens, AuthError>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.expect = Expect::Done;
        self.effects.push_back(FlowEffect::Finished(result));
    }

    fn step(&mut self, input: FlowInput) -> Result<(), AuthError> {
        let expect = std::mem::replace(&mut self.expect, Expect::Done);
        match (expect, input) {
            (
                Expect::Lock,
                FlowInput::LockTaken {
                    tokens,
                    client,
                    now_ms,
                },
            ) => {
                self.disk_tokens = tokens;
                self.disk_client = client;
                self.now_ms = now_ms;
                self.locked(now_ms)
            }
            (Expect::Lock, FlowInput::LockFailed(error)) => Err(error),
            (Expect::ResourceMetadata { candidates }, FlowInput::MetadataFetched(got)) => {
                self.resource_metadata(candidates, got)
            }
            (Expect::LegacyMetadata, FlowInput::MetadataFetched(got)) => {
                let meta = match got {
                    Fetched::Document(body) => serde_json::from_slice(&body)
                        .unwrap_or_else(|_| discovery::fallback_metadata(&self.options.mcp_url)),
                    Fetched::NotFound => discovery::fallback_metadata(&self.options.mcp_url),
                    Fetched::Failed(e) => return Err(e),
                };
                discovery::check_as_metadata(&meta, "", false)?;
                let issuer = meta
                    .issuer
                    .clone()
                    .unwrap_or_else(|| discovery::canonical_resource(&self.options.mcp_url));
                let resource = Some(discovery::canonical_resource(&self.options.mcp_url));
                self.discovered(issuer, meta, resource, None)
            }
            (
                Expect::ServerMetadata {
                    issuer,
                    candidates,
                    purpose,
                },
                FlowInput::MetadataFetched(got),
            ) => self.server_metadata(issuer, candidates, purpose, got),
            (Expect::Callback, FlowInput::CallbackBound(port)) => {
                self.port_event(PortEvent::Bound { port })
            }
            (Expect::Callback, FlowInput::CallbackBindFailed(reason)) => {
                self.port_event(PortEvent::BindFailed { reason })
            }
            (Expect::Registration { method, device }, FlowInput::Registered(answer)) => {
                let answer = answer?;
                let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
                let redirect_uri = self.redirect_uri.clone().unwrap_or_default();
                let mut client = registration::parse_response(
                    answer.status,
                    &answer.body,
                    &registration::Requested {
                        redirect_uri: &redirect_uri,
                        token_endpoint_auth_method: method,
                        issuer: &disc.issuer,
                    },
                )?;
                if device {
                    // Remember what it was registered for, so a later device sign-in reuses it.
                    client.extra.entry("grant_types").or_insert_with(|| {
                        serde_json::json!([device::GRANT_TYPE, "refresh_token"])
                    });
                }
                self.effects
                    .push_back(FlowEffect::SaveClient(client.clone()));
                self.client = Some((client, true));
                if device {
                    self.request_device_code()
                } else {
                    self.authorize()
                }
            }
            (Expect::DeviceCode, FlowInput::DeviceCodeAnswered { answer, now_ms }) => {
                let answer = answer?;
                let d =
                    device::parse_response(answer.status, &answer.body, self.options.allow_http)?;
                let poll = DevicePoll {
                    device_code: d.device_code.clone(),
                    interval: d.interval,
                    lifetime: d.lifetime,
                    deadline_ms: now_ms.saturating_add(d.lifetime.as_millis() as u64),
                };
                self.effects.push_back(FlowEffect::ShowDeviceCode(d));
                self.wait_then_poll(poll);
                Ok(())
            }
            (Expect::DeviceWait(poll), FlowInput::Waited { now_ms }) => {
                self.poll_device(poll, now_ms)
            }
            (Expect::Assertion, FlowInput::AssertionRead(assertion)) => {
                self.exchange_assertion(assertion?.0)
            }
            (Expect::AuthorizationCode, FlowInput::CallbackReceived(response)) => {
                let response = response?;
                let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
                // RFC 9207: `iss` before anything else in the response, then the error, then the code.
                let promised =
                    disc.meta.authorization_response_iss_parameter_supported == Some(true);
                let code = response.into_code(&disc.issuer, promised)?;
                let secrets = self.secrets.take().ok_or(AuthError::ListenerStopped)?;
                let mut params = vec![
                    ("grant_type", "authorization_code".to_owned()),
                    ("code", code),
                    (
                        "redirect_uri",
                        self.redirect_uri.clone().unwrap_or_default(),
                    ),
                    ("code_verifier", secrets.code_verifier),
                ];
                if let Some(r) = self.resource_param(&disc) {
                    params.push(("resource", r));
                }
                let (client, _) = self.client.clone().ok_or(AuthError::NoClient)?;
                self.request_token(&disc.meta.token_endpoint, &client, params, TokenFor::Code);
                Ok(())
            }
            (Expect::Token(purpose), FlowInput::TokenAnswered { answer, now_ms }) => {
                self.token_answered(purpose, answer, now_ms)
            }
            (expect, input) => {
                // An input the flow did not ask for: a driver bug, never a reason to send anything.
                debug_assert!(false, "flow expected {expect:?}, got {input:?}");
                self.expect = expect;
                Ok(())
            }
        }
    }

    /// Under the lock: what the store holds decides whether a request is needed at all.
    fn locked(&mut self, now_ms: u64) -> Result<(), AuthError> {
        let disk = self.disk_tokens.clone();
        match self.start.clone() {
            FlowStart::Refresh { held } => {
                let Some(disk) = disk else {
                    // Another copy was told they are dead and forgot them.
                    return Err(AuthError::NoRefreshToken);
                };
                if disk.access_token != held.access_token
                    && disk.fresh(now_ms, disk.refresh_margin(REFRESH_MARGIN))
                {
                    // Another copy refreshed while this one waited.
                    return self.done(disk);
                }
                self.refresh(disk)
            }
            FlowStart::SignIn {
                step_up, refused, ..
            } => {
                if step_up.is_none() {
                    if let Some(disk) = disk {
                        if Some(&disk.access_token) != refused.as_ref() {
                            if disk.fresh(now_ms, disk.refresh_margin(REFRESH_MARGIN)) {
                                // Another copy signed in while this one waited for the lock.
                                return self.done(disk);
                            }
                            if disk.refresh_token.is_some() {
                                // Theirs are about to expire: refresh them rather than sign in.
                                self.then_sign_in = true;
                                if self.refresh(disk).is_ok() {
                                    return Ok(());
                                }
                                self.then_sign_in = false;
                            }
                        }
                    }
                }
                self.discover()
            }
        }
    }

    fn done(&mut self, tokens: StoredTokens) -> Result<(), AuthError> {
        self.finish(Ok(tokens));
        Ok(())
    }

    /// Refresh `tokens` at the issuer that issued them, with the client registered there.
    fn refresh(&mut self, tokens: StoredTokens) -> Result<(), AuthError> {
        if tokens.refresh_token.is_none() {
            return Err(AuthError::NoRefreshToken);
        }
        let (client, stored) = self.refresh_client(&tokens)?;
        let issuer = tokens
            .issuer
            .clone()
            .or_else(|| client.issuer.clone())
            .ok_or(AuthError::IssuerUnknown)?;
        let issuer_url = self.check_url(&issuer)?;
        let purpose = MetadataFor::Refresh {
            tokens: StoredTokens {
                issuer: Some(issuer.clone()),
                ..tokens
            },
            client,
            stored_client: stored,
        };
        self.fetch_server_metadata(issuer, &issuer_url, purpose);
        Ok(())
    }

    /// The client a refresh may use: the one bound to the tokens' issuer, never another.
    fn refresh_client(&self, tokens: &StoredTokens) -> Result<(ClientInfo, bool), AuthError> {
        let issuer = tokens.issuer.as_deref();
        if let Some(c) = &self.options.static_client {
            if let (Some(bound), Some(issuer)) = (self.static_issuer(), issuer) {
                if bound != issuer {
                    return Err(AuthError::IssuerChanged {
                        bound,
                        named: issuer.to_owned(),
                    });
                }
            }
            return Ok((c.clone(), false));
        }
        if let Some(id) = &self.options.client_metadata_url {
            return Ok((cimd_client(id, None), false));
        }
        match (&self.disk_client, issuer) {
            (Some(c), Some(issuer)) if c.issuer.as_deref() == Some(issuer) => Ok((c.clone(), true)),
            // Tokens from an older file without `issuer`: the client says where it registered.
            (Some(c), None) if c.issuer.is_some() => Ok((c.clone(), true)),
            _ => Err(AuthError::NoClient),
        }
    }

    /// The issuer a static client belongs to: the one its flag names, else the one it
    /// was first used with (kept in the client file), else the one its tokens came from.
    fn static_issuer(&self) -> Option<String> {
        let c = self.options.static_client.as_ref()?;
        c.issuer
            .clone()
            .or_else(|| {
                self.disk_client
                    .as_ref()
                    .filter(|d| d.client_id == c.client_id)
                    .and_then(|d| d.issuer.clone())
            })
            .or_else(|| self.disk_tokens.as_ref().and_then(|t| t.issuer.clone()))
    }

    /// A URL the server or an authorization server named: https (or loopback, or
    /// `--allow-http`), and public unless the MCP server is not or the user allows it.
    fn check_url(&self, url: &str) -> Result<Url, AuthError> {
        let u = discovery::check_secure(url, self.options.allow_http)?;
        if !self.options.allow_private_network {
            discovery::check_public(&u, &self.options.mcp_url)?;
        }
        Ok(u)
    }

    fn fetch_server_metadata(&mut self, issuer: String, issuer_url: &Url, purpose: MetadataFor) {
        let mut candidates: VecDeque<Url> = discovery::as_metadata_candidates(issuer_url).into();
        let first = candidates.pop_front();
        match first {
            Some(url) => {
                self.effects.push_back(FlowEffect::FetchMetadata(url));
                self.expect = Expect::ServerMetadata {
                    issuer,
                    candidates,
                    purpose,
                };
            }
            None => self.finish(Err(AuthError::NoMetadata(issuer))),
        }
    }

    /// Discovery for a sign-in: the protected resource metadata first (or none, with
    /// `--token-endpoint`).
    fn discover(&mut self) -> Result<(), AuthError> {
        if let Some(endpoint) = self.options.token_endpoint.clone() {
            let mut origin = endpoint.clone();
            origin.set_path("/");
            origin.set_query(None);
            let issuer = discovery::canonical_resource(&origin);
            let meta = discovery::AuthServerMetadata {
                issuer: Some(issuer.clone()),
                authorization_endpoint: endpoint.to_string(),
                token_endpoint: endpoint.to_string(),
                ..discovery::AuthServerMetadata::default()
            };
            return self.discovered(issuer, meta, None, None);
        }
        let FlowStart::SignIn { challenge, .. } = &self.start else {
            return Err(AuthError::NoRefreshToken);
        };
        let mut candidates = VecDeque::new();
        for url in discovery::prm_candidates(
            &self.options.mcp_url,
            challenge.resource_metadata.as_deref(),
        )? {
            // RFC 9728 §5.1: the `resource_metadata` of a challenge is a URL the
            // server chose; it is held to the same rules as every discovered URL.
            candidates.push_back(self.check_url(url.as_str())?);
        }
        self.next_resource_metadata(candidates);
        Ok(())
    }

    fn next_resource_metadata(&mut self, mut candidates: VecDeque<Url>) {
        match candidates.pop_front() {
            Some(url) => {
                self.effects.push_back(FlowEffect::FetchMetadata(url));
                self.expect = Expect::ResourceMetadata { candidates };
            }
            None => {
                // MCP 2025-03-26: no protected resource metadata.
                self.effects
                    .push_back(FlowEffect::FetchMetadata(discovery::legacy_metadata_url(
                        &self.options.mcp_url,
                    )));
                self.expect = Expect::LegacyMetadata;
            }
        }
    }

    fn resource_metadata(
        &mut self,
        candidates: VecDeque<Url>,
        got: Fetched,
    ) -> Result<(), AuthError> {
        let prm: ProtectedResource = match got {
            Fetched::Document(body) => match serde_json::from_slice(&body) {
                Ok(prm) => prm,
                Err(_) => {
                    self.next_resource_metadata(candidates);
                    return Ok(());
                }
            },
            Fetched::NotFound => {
                self.next_resource_metadata(candidates);
                return Ok(());
            }
            Fetched::Failed(e) => return Err(e),
        };
        discovery::check_resource(&prm, &self.options.mcp_url)?;
        let issuer = prm
            .authorization_servers
            .first()
            .cloned()
            .ok_or(DiscoveryError::NoAuthorizationServer)?;
        let issuer_url = self.check_url(&issuer)?;
        let resource = prm
            .resource
            .clone()
            .or_else(|| Some(discovery::canonical_resource(&self.options.mcp_url)));
        self.fetch_server_metadata(
            issuer,
            &issuer_url,
            MetadataFor::SignIn {
                resource,
                prm_scopes: prm.scopes_supported,
            },
        );
        Ok(())
    }

    fn server_metadata(
        &mut self,
        issuer: String,
        mut candidates: VecDeque<Url>,
        purpose: MetadataFor,
        got: Fetched,
    ) -> Result<(), AuthError> {
        let meta: Option<AuthServerMetadata> = match got {
            Fetched::Document(body) => serde_json::from_slice(&body).ok(),
            Fetched::NotFound => None,
            Fetched::Failed(e) => return Err(e),
        };
        let Some(meta) = meta else {
            return match candidates.pop_front() {
                Some(url) => {
                    self.effects.push_back(FlowEffect::FetchMetadata(url));
                    self.expect = Expect::ServerMetadata {
                        issuer,
                        candidates,
                        purpose,
                    };
                    Ok(())
                }
                None => Err(AuthError::NoMetadata(issuer)),
            };
        };
        // RFC 8414 §3.3: the issuer in the document is identical to the one asked for.
        discovery::check_as_metadata(&meta, &issuer, true)?;
        self.check_url(&meta.authorization_endpoint)?;
        self.check_url(&meta.token_endpoint)?;
        if let Some(r) = &meta.registration_endpoint {
            self.check_url(r)?;
        }
        if let Some(d) = &meta.device_authorization_endpoint {
            self.check_url(d)?;
        }
        match purpose {
            MetadataFor::Refresh {
                tokens,
                client,
                stored_client,
            } => {
                let refresh_token = tokens.refresh_token.clone().unwrap_or_default();
                let mut params = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh_token),
                ];
                let resource = match &self.options.resource {
                    ResourceParam::Disabled => None,
                    ResourceParam::Fixed(r) => Some(r.clone()),
                    ResourceParam::Auto => tokens
                        .resource
                        .clone()
                        .or_else(|| Some(discovery::canonical_resource(&self.options.mcp_url))),
                };
                if let Some(r) = &resource {
                    params.push(("resource", r.clone()));
                }
                self.request_token(
                    &meta.token_endpoint,
                    &client,
                    params,
                    TokenFor::Refresh {
                        old: StoredTokens { resource, ..tokens },
                        stored_client,
                    },
                );
                Ok(())
            }
            MetadataFor::SignIn {
                resource,
                prm_scopes,
            } => self.discovered(issuer, meta, resource, prm_scopes),
        }
    }

    /// The authorization server is known: pick the scope and the client, then the port.
    fn discovered(
        &mut self,
        issuer: String,
        meta: AuthServerMetadata,
        resource: Option<String>,
        prm_scopes: Option<Vec<String>>,
    ) -> Result<(), AuthError> {
        // Legacy discovery checks its endpoints here (the PRM path checked them already).
        self.check_url(&meta.authorization_endpoint)?;
        self.check_url(&meta.token_endpoint)?;
        if let Some(r) = &meta.registration_endpoint {
            self.check_url(r)?;
        }
        let FlowStart::SignIn {
            challenge, step_up, ..
        } = &self.start
        else {
            return Err(AuthError::NoRefreshToken);
        };
        let pinned_scope = self
            .options
            .static_metadata
            .as_ref()
            .and_then(|m| m.get("scope"))
            .and_then(|s| s.as_str());
        let scope = step_up.clone().or_else(|| {
            scope::initial_scope(
                pinned_scope,
                challenge.scope.as_deref(),
                prm_scopes.as_deref(),
                meta.scopes_supported.as_deref(),
            )
        });
        if let Some(c) = &self.options.static_client {
            match self.static_issuer() {
                Some(bound) if bound != issuer => {
                    return Err(AuthError::IssuerChanged {
                        bound,
                        named: issuer,
                    })
                }
                Some(_) => {}
                None => {
                    // First use: the client belongs to this issuer from now on.
                    self.effects.push_back(FlowEffect::SaveClient(ClientInfo {
                        issuer: Some(issuer.clone()),
                        ..c.clone()
                    }));
                }
            }
        }
        let disc = Discovered {
            issuer,
            meta,
            resource,
            scope,
        };
        self.discovered = Some(disc.clone());
        if self.options.client_credentials {
            let client = self
                .options
                .static_client
                .clone()
                .ok_or(AuthError::NoClientCredentials)?;
            let mut params = vec![("grant_type", "client_credentials".to_owned())];
            if let Some(s) = &disc.scope {
                params.push(("scope", s.clone()));
            }
            if let Some(r) = self.resource_param(&disc) {
                params.push(("resource", r));
            }
            self.request_token(
                &disc.meta.token_endpoint,
                &client,
                params,
                TokenFor::ClientCredentials,
            );
            return Ok(());
        }
        if self.options.enterprise.is_some() {
            if self.options.static_client.is_none() {
                return Err(AuthError::NoClientCredentials);
            }
            self.effects.push_back(FlowEffect::ReadAssertion);
            self.expect = Expect::Assertion;
            return Ok(());
        }
        let device_endpoint = match self.options.device {
            DeviceChoice::Never => None,
            DeviceChoice::WhenOffered => disc.meta.device_authorization_endpoint.clone(),
            DeviceChoice::Always => Some(
                disc.meta
                    .device_authorization_endpoint
                    .clone()
                    .ok_or_else(|| AuthError::NoDeviceGrant(disc.issuer.clone()))?,
            ),
        };
        if let Some(endpoint) = device_endpoint {
            self.check_url(&endpoint)?;
            self.device_endpoint = Some(endpoint);
            return self.device_client();
        }
        // The callback port: the stored registration's, when it is bound to this issuer.
        let registered = self
            .usable_stored_client(&disc.issuer)
            .and_then(|c| c.redirect_uris.first().cloned())
            .and_then(|u| Url::parse(&u).ok())
            .and_then(|u| u.port());
        let pinned =
            self.options.static_client.is_some() || self.cimd_supported(&disc.meta).is_some();
        let mut port = CallbackPort::default().state_machine();
        let mut out = PortOutbox::default();
        port.handle_with_context(
            &PortEvent::Planned {
                explicit: self.options.callback_port,
                registered,
                pinned,
            },
            &mut out,
        );
        self.port = Some(port);
        self.expect = Expect::Callback;
        self.port_effects(out)
    }

    fn port_event(&mut self, event: PortEvent) -> Result<(), AuthError> {
        let mut out = PortOutbox::default();
        if let Some(port) = &mut self.port {
            port.handle_with_context(&event, &mut out);
        }
        self.expect = Expect::Callback;
        self.port_effects(out)
    }

    /// The CallbackPort machine's plan, drained whole and in order.
    fn port_effects(&mut self, out: PortOutbox) -> Result<(), AuthError> {
        for effect in out.0 {
            match effect {
                PortEffect::TryBind(port) => {
                    self.effects.push_back(FlowEffect::BindCallback(port));
                    self.expect = Expect::Callback;
                }
                PortEffect::Ready(port) => return self.bound(port),
                PortEffect::GiveUp(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn cimd_supported(&self, meta: &AuthServerMetadata) -> Option<String> {
        match (
            &self.options.client_metadata_url,
            meta.client_id_metadata_document_supported,
        ) {
            (Some(url), Some(true)) => Some(url.clone()),
            _ => None,
        }
    }

    /// The stored registration, if it was made at `issuer` and its secret has not expired.
    fn usable_stored_client(&self, issuer: &str) -> Option<&ClientInfo> {
        let c = self.disk_client.as_ref()?;
        if c.issuer.as_deref() != Some(issuer) {
            return None;
        }
        Some(c)
    }

    /// Listening: choose the client (registering one if needed), then send the user.
    fn bound(&mut self, port: u16) -> Result<(), AuthError> {
        let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
        let redirect_uri = format!(
            "http://{}:{port}{}",
            self.options.redirect_host, self.options.callback_path
        );
        self.redirect_uri = Some(redirect_uri.clone());
        if let Some(c) = &self.options.static_client {
            self.client = Some((c.clone(), false));
            return self.authorize();
        }
        if let Some(url) = self.cimd_supported(&disc.meta) {
            self.client = Some((cimd_client(&url, Some(&redirect_uri)), false));
            return self.authorize();
        }
        if let Some(c) = self.usable_stored_client(&disc.issuer) {
            if c.redirect_uris.iter().any(|r| r == &redirect_uri) && !secret_expired(c, self.now_ms)
            {
                self.client = Some((c.clone(), true));
                return self.authorize();
            }
        }
        let Some(endpoint) = disc.meta.registration_endpoint.clone() else {
            return Err(AuthError::NoRegistration);
        };
        let method = discovery::choose_token_auth(
            disc.meta.token_endpoint_auth_methods_supported.as_deref(),
        );
        let mut body = serde_json::json!({
            "client_name": self.options.client_name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method.as_str(),
            "application_type": "native",
            "software_id": "mcp-remote-rs",
            "software_version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(s) = &disc.scope {
            body["scope"] = s.clone().into();
        }
        if let (Some(extra), Some(obj)) = (&self.options.static_metadata, body.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        self.effects
            .push_back(FlowEffect::Register { endpoint, body });
        self.expect = Expect::Registration {
            method,
            device: false,
        };
        Ok(())
    }

    /// The client for a device sign-in: the pre-registered one, a metadata document
    /// URL, a stored registration for this grant at this issuer, or a new one.
    fn device_client(&mut self) -> Result<(), AuthError> {
        let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
        if let Some(c) = &self.options.static_client {
            self.client = Some((c.clone(), false));
            return self.request_device_code();
        }
        if let Some(url) = self.cimd_supported(&disc.meta) {
            self.client = Some((cimd_client(&url, None), false));
            return self.request_device_code();
        }
        if let Some(c) = self.usable_stored_client(&disc.issuer) {
            let for_device = c
                .extra
                .get("grant_types")
                .and_then(|g| g.as_array())
                .is_some_and(|g| g.iter().any(|t| t == device::GRANT_TYPE));
            if for_device && !secret_expired(c, self.now_ms) {
                self.client = Some((c.clone(), true));
                return self.request_device_code();
            }
        }
        let Some(endpoint) = disc.meta.registration_endpoint.clone() else {
            return Err(AuthError::NoRegistration);
        };
        let method = discovery::choose_token_auth(
            disc.meta.token_endpoint_auth_methods_supported.as_deref(),
        );
        let mut body = serde_json::json!({
            "client_name": self.options.client_name,
            "grant_types": [device::GRANT_TYPE, "refresh_token"],
            "response_types": [],
            "token_endpoint_auth_method": method.as_str(),
            "application_type": "native",
            "software_id": "mcp-remote-rs",
            "software_version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(s) = &disc.scope {
            body["scope"] = s.clone().into();
        }
        if let (Some(extra), Some(obj)) = (&self.options.static_metadata, body.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        self.effects
            .push_back(FlowEffect::Register { endpoint, body });
        self.expect = Expect::Registration {
            method,
            device: true,
        };
        Ok(())
    }

    /// RFC 8693 §2.1 at the identity provider: the identity assertion for an ID-JAG
    /// whose audience is the MCP server's authorization server, for its resource.
    fn exchange_assertion(&mut self, assertion: String) -> Result<(), AuthError> {
        let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
        let e = self
            .options
            .enterprise
            .clone()
            .ok_or(AuthError::ListenerStopped)?;
        let mut params = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("requested_token_type", ID_JAG.to_owned()),
            ("subject_token", assertion),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token".to_owned(),
            ),
            ("audience", disc.issuer.clone()),
        ];
        let resource = self
            .resource_param(&disc)
            .unwrap_or_else(|| discovery::canonical_resource(&self.options.mcp_url));
        params.push(("resource", resource));
        if let Some(s) = &disc.scope {
            params.push(("scope", s.clone()));
        }
        // At the identity provider, the client is its own (or none): never the MCP one.
        let auth = match (&e.idp_client_id, &e.idp_client_secret) {
            (Some(_), Some(_)) => TokenAuth::ClientSecretBasic,
            _ => TokenAuth::None,
        };
        let request = TokenRequest {
            endpoint: e.idp_token_endpoint.to_string(),
            auth,
            client_id: e.idp_client_id.clone().unwrap_or_default(),
            client_secret: e.idp_client_secret.clone(),
            params,
            audience: e.idp_token_endpoint.to_string(),
        };
        self.effects.push_back(FlowEffect::RequestToken(request));
        self.expect = Expect::Token(TokenFor::Exchange);
        Ok(())
    }

    /// RFC 8628 §3.1: ask for a device code (scope and resource as for the browser).
    fn request_device_code(&mut self) -> Result<(), AuthError> {
        let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
        let endpoint = self
            .device_endpoint
            .clone()
            .ok_or(AuthError::ListenerStopped)?;
        let (client, _) = self.client.clone().ok_or(AuthError::NoClient)?;
        let mut params = Vec::new();
        if let Some(s) = &disc.scope {
            params.push(("scope", s.clone()));
        }
        if let Some(r) = self.resource_param(&disc) {
            params.push(("resource", r));
        }
        let request = self.token_request(&endpoint, &client, params);
        self.effects
            .push_back(FlowEffect::RequestDeviceCode(request));
        self.expect = Expect::DeviceCode;
        Ok(())
    }

    fn wait_then_poll(&mut self, poll: DevicePoll) {
        self.effects.push_back(FlowEffect::Wait(poll.interval));
        self.expect = Expect::DeviceWait(poll);
    }

    /// RFC 8628 §3.4: one poll of the token endpoint, unless the code has expired.
    fn poll_device(&mut self, poll: DevicePoll, now_ms: u64) -> Result<(), AuthError> {
        if now_ms >= poll.deadline_ms {
            return Err(DeviceError::Expired(poll.lifetime).into());
        }
        let endpoint = self
            .discovered
            .as_ref()
            .map(|d| d.meta.token_endpoint.clone())
            .ok_or(AuthError::ListenerStopped)?;
        let (client, _) = self.client.clone().ok_or(AuthError::NoClient)?;
        let params = vec![
            ("grant_type", device::GRANT_TYPE.to_owned()),
            ("device_code", poll.device_code.clone()),
        ];
        self.request_token(&endpoint, &client, params, TokenFor::Device(poll));
        Ok(())
    }

    /// The authorization URL (PKCE S256, `state`, scope, resource, extra params).
    fn authorize(&mut self) -> Result<(), AuthError> {
        let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
        let (client, _) = self.client.clone().ok_or(AuthError::NoClient)?;
        let secrets = self.secrets.clone().ok_or(AuthError::ListenerStopped)?;
        let mut url = Url::parse(&disc.meta.authorization_endpoint)
            .map_err(|_| AuthError::BadAuthorizationEndpoint)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair(
                    "redirect_uri",
                    self.redirect_uri.as_deref().unwrap_or_default(),
                )
                .append_pair("code_challenge", &secrets.code_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &secrets.state);
            if let Some(s) = &disc.scope {
                q.append_pair("scope", s);
            }
            if let Some(r) = self.resource_param(&disc) {
                q.append_pair("resource", &r);
            }
            for (k, v) in &self.options.authorize_params {
                q.append_pair(k, v);
            }
        }
        self.effects.push_back(FlowEffect::AwaitCallback {
            url,
            state: secrets.state,
        });
        self.expect = Expect::AuthorizationCode;
        Ok(())
    }

    fn resource_param(&self, disc: &Discovered) -> Option<String> {
        match &self.options.resource {
            ResourceParam::Disabled => None,
            ResourceParam::Fixed(r) => Some(r.clone()),
            ResourceParam::Auto => disc.resource.clone(),
        }
    }

    fn request_token(
        &mut self,
        endpoint: &str,
        client: &ClientInfo,
        params: Vec<(&'static str, String)>,
        purpose: TokenFor,
    ) {
        let request = self.token_request(endpoint, client, params);
        self.effects.push_back(FlowEffect::RequestToken(request));
        self.expect = Expect::Token(purpose);
    }

    /// A request to an endpoint of the authorization server, with the client's
    /// authentication (OAuth 2.1 §2.4) chosen here.
    fn token_request(
        &self,
        endpoint: &str,
        client: &ClientInfo,
        params: Vec<(&'static str, String)>,
    ) -> TokenRequest {
        let auth = match &self.options.client_key {
            Some(_) => TokenAuth::PrivateKeyJwt,
            None => client
                .token_endpoint_auth_method
                .as_deref()
                .and_then(TokenAuth::from_name)
                // Without --client-key there is nothing to sign with.
                .filter(|a| *a != TokenAuth::PrivateKeyJwt)
                .unwrap_or(if client.client_secret.is_some() {
                    TokenAuth::ClientSecretBasic
                } else {
                    TokenAuth::None
                }),
        };
        let audience = self
            .discovered
            .as_ref()
            .map(|d| d.issuer.clone())
            .unwrap_or_else(|| endpoint.to_owned());
        TokenRequest {
            endpoint: endpoint.to_owned(),
            auth,
            client_id: client.client_id.clone(),
            client_secret: client.client_secret.clone(),
            params,
            audience,
        }
    }

    fn token_answered(
        &mut self,
        purpose: TokenFor,
        answer: Result<HttpAnswer, AuthError>,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let parsed =
            answer.and_then(|a| token::parse_response(a.status, &a.body).map_err(AuthError::from));
        self.token_parsed(purpose, parsed, now_ms)
    }

    fn token_parsed(
        &mut self,
        purpose: TokenFor,
        parsed: Result<TokenResponse, AuthError>,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        match purpose {
            TokenFor::Refresh { old, stored_client } => match parsed {
                Ok(t) => {
                    let tokens = stored(
                        t,
                        now_ms,
                        old.requested_scope.clone(),
                        old.issuer.clone(),
                        old.resource.clone(),
                        old.refresh_token.clone(),
                    );
                    self.effects
                        .push_back(FlowEffect::SaveTokens(tokens.clone()));
                    self.done(tokens)
                }
                Err(error) => {
                    if let AuthError::Token(e) = &error {
                        if e.rejected() {
                            // RFC 6749 §5.2: the grant (or the client) is dead. The file
                            // read under this lock held exactly these tokens.
                            self.effects.push_back(FlowEffect::Forget {
                                tokens: true,
                                client: stored_client && client_rejected(e),
                            });
                        }
                    }
                    if self.then_sign_in {
                        // The tokens another copy left could not be refreshed: sign in.
                        self.then_sign_in = false;
                        self.disk_tokens = None;
                        return self.discover();
                    }
                    Err(error)
                }
            },
            TokenFor::Device(poll) => {
                let refused = match &parsed {
                    Err(AuthError::Token(TokenError::Refused { error, .. })) => {
                        Some(device::classify(error))
                    }
                    // The network or a 5xx while the user types: ask again, until the code expires.
                    Err(AuthError::Unreachable { .. }) => Some(Poll::Pending),
                    _ => None,
                };
                match refused {
                    Some(Poll::Pending) => {
                        self.wait_then_poll(poll);
                        Ok(())
                    }
                    Some(Poll::SlowDown) => {
                        let interval =
                            (poll.interval + device::SLOW_DOWN_STEP).min(device::MAX_INTERVAL);
                        self.wait_then_poll(DevicePoll { interval, ..poll });
                        Ok(())
                    }
                    Some(Poll::Denied) => Err(DeviceError::Denied.into()),
                    Some(Poll::Expired) => Err(DeviceError::Expired(poll.lifetime).into()),
                    Some(Poll::Failed) | None => self.token_parsed(TokenFor::Code, parsed, now_ms),
                }
            }
            TokenFor::Exchange => {
                let jag = parsed.map_err(|e| match e {
                    AuthError::Token(t) => AuthError::IdentityExchange(t),
                    other => other,
                })?;
                let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
                let client = self
                    .options
                    .static_client
                    .clone()
                    .ok_or(AuthError::NoClientCredentials)?;
                let mut params = vec![
                    ("grant_type", JWT_BEARER.to_owned()),
                    ("assertion", jag.access_token),
                ];
                if let Some(s) = &disc.scope {
                    params.push(("scope", s.clone()));
                }
                if let Some(r) = self.resource_param(&disc) {
                    params.push(("resource", r));
                }
                self.request_token(
                    &disc.meta.token_endpoint,
                    &client,
                    params,
                    TokenFor::JwtBearer,
                );
                Ok(())
            }
            TokenFor::Code | TokenFor::ClientCredentials | TokenFor::JwtBearer => {
                let disc = self.discovered.clone().ok_or(AuthError::ListenerStopped)?;
                match parsed {
                    Ok(t) => {
                        let tokens = stored(
                            t,
                            now_ms,
                            disc.scope.clone(),
                            Some(disc.issuer.clone()),
                            self.resource_param(&disc),
                            None,
                        );
                        self.effects
                            .push_back(FlowEffect::SaveTokens(tokens.clone()));
                        self.done(tokens)
                    }
                    Err(error) => {
                        if let AuthError::Token(e) = &error {
                            let stored = self.client.as_ref().is_some_and(|(_, s)| *s);
                            if stored && client_rejected(e) {
                                // The registration is no good any more: the next sign-in registers again.
                                self.effects.push_back(FlowEffect::Forget {
                                    tokens: false,
                                    client: true,
                                });
                            }
                        }
                        Err(error)
                    }
                }
            }
        }
    }
}

/// `invalid_client` / `unauthorized_client`: the registration, not only the grant, is dead.
fn client_rejected(e: &TokenError) -> bool {
    matches!(e, TokenError::Refused { error, .. } if error == "invalid_client" || error == "unauthorized_client")
}

/// RFC 7591 §3.2.1: `client_secret_expires_at` (seconds; 0 = never).
fn secret_expired(c: &ClientInfo, now_ms: u64) -> bool {
    match c
        .extra
        .get("client_secret_expires_at")
        .and_then(|v| v.as_u64())
    {
        Some(0) | None => false,
        Some(at) => c.client_secret.is_some() && at.saturating_mul(1000) <= now_ms,
    }
}

fn cimd_client(url: &str, redirect_uri: Option<&str>) -> ClientInfo {
    ClientInfo {
        client_id: url.to_owned(),
        token_endpoint_auth_method: Some("none".into()),
        redirect_uris: redirect_uri.into_iter().map(str::to_owned).collect(),
        ..ClientInfo::default()
    }
}

/// The tokens to store from a token response.
fn stored(
    t: TokenResponse,
    now_ms: u64,
    requested_scope: Option<String>,
    issuer: Option<String>,
    resource: Option<String>,
    old_refresh: Option<String>,
) -> StoredTokens {
    StoredTokens {
        expires_at: t.expires_at(now_ms),
        access_token: t.access_token,
        token_type: t.token_type.unwrap_or_else(|| "Bearer".into()),
        expires_in: t.expires_in,
        scope: t.scope,
        // A rotated refresh token replaces the old one; otherwise the old one stays good.
        refresh_token: t.refresh_token.or(old_refresh),
        id_token: t.id_token,
        requested_scope,
        issuer,
        resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::callback::Answer;
    use proptest::prelude::*;

    const MCP: &str = "https://mcp.example/mcp";
    const AS_A: &str = "https://a.example";
    const AS_B: &str = "https://b.example";
    const NOW: u64 = 1_800_000_000_000;

    fn options() -> AuthOptions {
        AuthOptions {
            mcp_url: Url::parse(MCP).unwrap(),
            allow_http: false,
            allow_private_network: false,
            static_client: None,
            static_metadata: None,
            client_metadata_url: None,
            resource: ResourceParam::Auto,
            authorize_params: Vec::new(),
            redirect_host: "localhost".into(),
            callback_path: "/oauth/callback".into(),
            callback_port: None,
            auth_timeout: Duration::from_secs(30),
            client_credentials: false,
            client_name: "test".into(),
            success_url: None,
            use_id_token: false,
            token_endpoint: None,
            client_key: None,
            device: DeviceChoice::Never,
            enterprise: None,
        }
    }

    fn secrets() -> FlowSecrets {
        FlowSecrets {
            code_verifier: "verifier".into(),
            code_challenge: "challenge".into(),
            state: "state".into(),
        }
    }

    /// Tokens issued by A, expired, with A's refresh token.
    fn tokens_from_a() -> StoredTokens {
        StoredTokens {
            access_token: "at-a".into(),
            token_type: "Bearer".into(),
            refresh_token: Some("rt-a".into()),
            expires_at: Some(NOW - 1000),
            issuer: Some(AS_A.into()),
            ..StoredTokens::default()
        }
    }

    fn client_of_a(issuer: Option<&str>) -> ClientInfo {
        ClientInfo {
            client_id: "client-a".into(),
            client_secret: Some("secret-a".into()),
            redirect_uris: vec!["http://localhost:3334/oauth/callback".into()],
            token_endpoint_auth_method: Some("client_secret_post".into()),
            issuer: issuer.map(str::to_owned),
            extra: Default::default(),
        }
    }

    fn metadata(issuer: &str) -> Vec<u8> {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "registration_endpoint": format!("{issuer}/register"),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        })
        .to_string()
        .into_bytes()
    }

    fn token_body(access: &str, refresh: &str) -> Vec<u8> {
        serde_json::json!({
            "access_token": access, "token_type": "Bearer",
            "expires_in": 3600, "refresh_token": refresh,
        })
        .to_string()
        .into_bytes()
    }

    /// How the token endpoint answers in a scripted world.
    #[derive(Debug, Clone)]
    enum TokenReply {
        Ok,
        Status(u16, &'static str),
        Unreachable,
    }

    /// A world of two authorization servers: the MCP server's metadata names
    /// `prm_names`; `tokens` and `client` are on disk.
    #[derive(Debug, Clone)]
    struct World {
        prm_names: &'static str,
        tokens: Option<StoredTokens>,
        client: Option<ClientInfo>,
        lock_free: bool,
        metadata_up: bool,
        token_reply: TokenReply,
    }

    impl Default for World {
        fn default() -> Self {
            World {
                prm_names: AS_A,
                tokens: Some(tokens_from_a()),
                client: Some(client_of_a(Some(AS_A))),
                lock_free: true,
                metadata_up: true,
                token_reply: TokenReply::Ok,
            }
        }
    }

    /// Everything the flow did, for the assertions.
    #[derive(Debug, Default)]
    struct Trace {
        effects: Vec<FlowEffect>,
        finished: Option<Result<StoredTokens, AuthError>>,
    }

    impl Trace {
        fn token_requests(&self) -> Vec<&TokenRequest> {
            self.effects
                .iter()
                .filter_map(|e| match e {
                    FlowEffect::RequestToken(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
        fn forgets(&self) -> Vec<(bool, bool)> {
            self.effects
                .iter()
                .filter_map(|e| match e {
                    FlowEffect::Forget { tokens, client } => Some((*tokens, *client)),
                    _ => None,
                })
                .collect()
        }
        fn registered_at(&self) -> Vec<&str> {
            self.effects
                .iter()
                .filter_map(|e| match e {
                    FlowEffect::Register { endpoint, .. } => Some(endpoint.as_str()),
                    _ => None,
                })
                .collect()
        }
        fn error(&self) -> Option<&AuthError> {
            self.finished.as_ref().and_then(|r| r.as_ref().err())
        }
    }

    fn run(options: AuthOptions, start: FlowStart, world: &World) -> Trace {
        let mut flow = Flow::new(options, start, secrets());
        let mut trace = Trace::default();
        for _ in 0..64 {
            let Some(effect) = flow.poll_effect() else {
                break;
            };
            trace.effects.push(effect.clone());
            let input = match effect {
                FlowEffect::TakeLock if world.lock_free => FlowInput::LockTaken {
                    tokens: world.tokens.clone(),
                    client: world.client.clone(),
                    now_ms: NOW,
                },
                FlowEffect::TakeLock => FlowInput::LockFailed(AuthError::Locked),
                FlowEffect::FetchMetadata(url) => {
                    let origin = url.origin().ascii_serialization();
                    FlowInput::MetadataFetched(if !world.metadata_up {
                        Fetched::Failed(AuthError::MetadataStatus {
                            url: url.to_string(),
                            status: 503,
                        })
                    } else if url
                        .path()
                        .starts_with("/.well-known/oauth-protected-resource")
                    {
                        Fetched::Document(
                            serde_json::json!({
                                "resource": MCP, "authorization_servers": [world.prm_names],
                            })
                            .to_string()
                            .into_bytes(),
                        )
                    } else if url.path() == "/.well-known/oauth-authorization-server" {
                        Fetched::Document(metadata(&origin))
                    } else {
                        Fetched::NotFound
                    })
                }
                FlowEffect::BindCallback(port) => {
                    FlowInput::CallbackBound(if port == 0 { 40000 } else { port })
                }
                FlowEffect::Register { endpoint, .. } => {
                    let at = Url::parse(&endpoint)
                        .unwrap()
                        .host_str()
                        .unwrap()
                        .to_owned();
                    FlowInput::Registered(Ok(HttpAnswer {
                        status: 201,
                        body: serde_json::json!({
                            "client_id": format!("client-{at}"),
                            "client_secret": format!("secret-{at}"),
                        })
                        .to_string()
                        .into_bytes(),
                    }))
                }
                FlowEffect::AwaitCallback { state, .. } => {
                    assert_eq!(state, "state");
                    FlowInput::CallbackReceived(Ok(AuthorizationResponse {
                        iss: None,
                        answer: Answer::Code("code".into()),
                    }))
                }
                FlowEffect::RequestToken(_) => FlowInput::TokenAnswered {
                    answer: match &world.token_reply {
                        TokenReply::Ok => Ok(HttpAnswer {
                            status: 200,
                            body: token_body("at-new", "rt-new"),
                        }),
                        TokenReply::Status(status, error) => Ok(HttpAnswer {
                            status: *status,
                            body: serde_json::json!({ "error": error })
                                .to_string()
                                .into_bytes(),
                        }),
                        TokenReply::Unreachable => Err(AuthError::Unreachable {
                            step: crate::auth::AuthStep::Token,
                            detail: "connection refused".into(),
                        }),
                    },
                    now_ms: NOW,
                },
                FlowEffect::SaveClient(_)
                | FlowEffect::SaveTokens(_)
                | FlowEffect::Forget { .. } => continue,
                FlowEffect::RequestDeviceCode(_)
                | FlowEffect::ShowDeviceCode(_)
                | FlowEffect::Wait(_)
                | FlowEffect::ReadAssertion => unreachable!("these worlds offer no device grant"),
                FlowEffect::Finished(result) => {
                    trace.finished = Some(result);
                    assert!(flow.poll_effect().is_none(), "nothing after Finished");
                    break;
                }
            };
            flow.handle(input);
        }
        assert!(trace.finished.is_some(), "the flow ended: {trace:?}");
        trace
    }

    fn refresh() -> FlowStart {
        FlowStart::Refresh {
            held: tokens_from_a(),
        }
    }

    fn sign_in() -> FlowStart {
        FlowStart::SignIn {
            challenge: BearerChallenge::default(),
            step_up: None,
            refused: Some("at-a".into()),
        }
    }

    fn param<'a>(r: &'a TokenRequest, name: &str) -> Option<&'a str> {
        r.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_refresh_goes_to_the_issuer_of_the_tokens_whatever_the_server_names_now() {
        let world = World {
            prm_names: AS_B,
            ..World::default()
        };
        let trace = run(options(), refresh(), &world);
        let requests = trace.token_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].endpoint, format!("{AS_A}/token"));
        assert_eq!(param(requests[0], "refresh_token"), Some("rt-a"));
        assert_eq!(requests[0].client_id, "client-a");
        let tokens = trace.finished.unwrap().unwrap();
        assert_eq!(tokens.issuer.as_deref(), Some(AS_A));
        assert_eq!(tokens.refresh_token.as_deref(), Some("rt-new"));
        assert_eq!(tokens.resource.as_deref(), Some(MCP));
    }

    #[test]
    fn a_sign_in_at_another_issuer_registers_there_and_sends_nothing_of_the_first() {
        for client in [client_of_a(Some(AS_A)), client_of_a(None)] {
            let world = World {
                prm_names: AS_B,
                client: Some(client.clone()),
                ..World::default()
            };
            let trace = run(options(), sign_in(), &world);
            assert_eq!(trace.registered_at(), vec![format!("{AS_B}/register")]);
            for r in trace.token_requests() {
                assert_eq!(r.endpoint, format!("{AS_B}/token"));
                assert_eq!(r.client_id, "client-b.example");
                assert_ne!(r.client_secret.as_deref(), Some("secret-a"));
                assert!(r.params.iter().all(|(_, v)| v != "rt-a"));
            }
            let tokens = trace.finished.unwrap().unwrap();
            assert_eq!(tokens.issuer.as_deref(), Some(AS_B), "{client:?}");
        }
    }

    #[test]
    fn a_client_without_issuer_is_never_used_for_a_sign_in() {
        let world = World {
            client: Some(client_of_a(None)),
            tokens: None,
            ..World::default()
        };
        let trace = run(options(), sign_in(), &world);
        assert_eq!(trace.registered_at(), vec![format!("{AS_A}/register")]);
        assert!(trace
            .token_requests()
            .iter()
            .all(|r| r.client_id != "client-a"));
    }

    #[test]
    fn a_stored_client_of_the_same_issuer_is_reused() {
        let world = World {
            tokens: None,
            ..World::default()
        };
        let trace = run(options(), sign_in(), &world);
        assert!(trace.registered_at().is_empty());
        assert_eq!(trace.token_requests()[0].client_id, "client-a");
        let first_bind = trace.effects.iter().find_map(|e| match e {
            FlowEffect::BindCallback(p) => Some(*p),
            _ => None,
        });
        assert_eq!(
            first_bind,
            Some(3334),
            "the registration's port comes first"
        );
    }

    #[test]
    fn a_static_client_bound_elsewhere_is_a_clear_error_and_sends_nothing() {
        let mut opts = options();
        opts.static_client = Some(client_of_a(Some(AS_A)));
        let world = World {
            prm_names: AS_B,
            tokens: None,
            ..World::default()
        };
        let trace = run(opts.clone(), sign_in(), &world);
        assert!(
            matches!(trace.error(), Some(AuthError::IssuerChanged { .. })),
            "{trace:?}"
        );
        assert!(trace.token_requests().is_empty());
        // Without an issuer in the flag, the tokens it got last bind it.
        opts.static_client = Some(client_of_a(None));
        let world = World {
            prm_names: AS_B,
            tokens: Some(StoredTokens {
                access_token: "at-a".into(),
                ..tokens_from_a()
            }),
            ..World::default()
        };
        let trace = run(opts, sign_in(), &world);
        assert!(
            matches!(trace.error(), Some(AuthError::IssuerChanged { .. })),
            "{trace:?}"
        );
        assert!(trace
            .token_requests()
            .iter()
            .all(|r| r.endpoint != format!("{AS_B}/token")));
    }

    #[test]
    fn only_a_definitive_answer_forgets_and_only_what_it_condemns() {
        let cases: [(TokenReply, Vec<(bool, bool)>); 6] = [
            (TokenReply::Unreachable, vec![]),
            (TokenReply::Status(503, "temporarily_unavailable"), vec![]),
            (TokenReply::Status(500, ""), vec![]),
            (
                TokenReply::Status(400, "invalid_grant"),
                vec![(true, false)],
            ),
            (
                TokenReply::Status(401, "invalid_client"),
                vec![(true, true)],
            ),
            (
                TokenReply::Status(400, "unauthorized_client"),
                vec![(true, true)],
            ),
        ];
        for (reply, forgets) in cases {
            let world = World {
                token_reply: reply.clone(),
                ..World::default()
            };
            let trace = run(options(), refresh(), &world);
            assert_eq!(trace.forgets(), forgets, "{reply:?}");
            let error = trace.error().expect("failed");
            assert_eq!(error.rejected(), !forgets.is_empty(), "{reply:?}: {error}");
        }
        for world in [
            World {
                lock_free: false,
                ..World::default()
            },
            World {
                metadata_up: false,
                ..World::default()
            },
        ] {
            let trace = run(options(), refresh(), &world);
            assert!(trace.forgets().is_empty());
            assert!(!trace.error().unwrap().rejected(), "{world:?}");
        }
    }

    #[test]
    fn a_copy_that_waited_uses_or_refreshes_what_another_stored() {
        // Fresh tokens another copy stored: used as they are, nothing sent.
        let fresh = StoredTokens {
            access_token: "at-other".into(),
            expires_at: Some(NOW + 3_600_000),
            ..tokens_from_a()
        };
        let world = World {
            tokens: Some(fresh.clone()),
            ..World::default()
        };
        for start in [refresh(), sign_in()] {
            let trace = run(options(), start, &world);
            assert_eq!(trace.effects.len(), 2, "{trace:?}");
            assert_eq!(trace.finished.unwrap().unwrap(), fresh);
        }
        // Expiring tokens another copy stored: a sign-in refreshes them instead.
        let expiring = StoredTokens {
            access_token: "at-other".into(),
            refresh_token: Some("rt-other".into()),
            ..tokens_from_a()
        };
        let world = World {
            tokens: Some(expiring),
            ..World::default()
        };
        let trace = run(options(), sign_in(), &world);
        assert!(!trace
            .effects
            .iter()
            .any(|e| matches!(e, FlowEffect::AwaitCallback { .. })));
        assert_eq!(
            param(trace.token_requests()[0], "refresh_token"),
            Some("rt-other")
        );
        // … and signs in only when that refresh is refused.
        let world = World {
            tokens: Some(StoredTokens {
                access_token: "at-other".into(),
                ..tokens_from_a()
            }),
            token_reply: TokenReply::Status(400, "invalid_grant"),
            ..World::default()
        };
        let trace = run(options(), sign_in(), &world);
        assert!(trace
            .effects
            .iter()
            .any(|e| matches!(e, FlowEffect::AwaitCallback { .. })));
        assert_eq!(trace.forgets(), vec![(true, false)]);
    }

    #[test]
    fn discovered_urls_must_be_https_and_public() {
        for (metadata_url, refused) in [
            ("http://169.254.169.254/latest/meta-data", true),
            ("https://169.254.169.254/x", true),
            (
                "https://10.0.0.7/.well-known/oauth-protected-resource",
                true,
            ),
            ("https://[fe80::1]/x", true),
            ("https://127.0.0.1:9/x", true),
            (
                "http://mcp.example/.well-known/oauth-protected-resource",
                true,
            ),
            (
                "https://mcp.example/.well-known/oauth-protected-resource",
                false,
            ),
        ] {
            let start = FlowStart::SignIn {
                challenge: BearerChallenge {
                    resource_metadata: Some(metadata_url.into()),
                    ..BearerChallenge::default()
                },
                step_up: None,
                refused: None,
            };
            let world = World {
                tokens: None,
                ..World::default()
            };
            let trace = run(options(), start.clone(), &world);
            let fetched: Vec<&Url> = trace
                .effects
                .iter()
                .filter_map(|e| match e {
                    FlowEffect::FetchMetadata(u) => Some(u),
                    _ => None,
                })
                .collect();
            if refused {
                assert!(fetched.is_empty(), "{metadata_url}: {fetched:?}");
                assert!(
                    matches!(trace.error(), Some(AuthError::Discovery(_))),
                    "{metadata_url}: {:?}",
                    trace.error()
                );
                // A server on a private network may point there, and so may a user who says so.
                let mut opts = options();
                opts.allow_private_network = true;
                opts.allow_http = metadata_url.starts_with("http:");
                let trace = run(opts, start, &world);
                assert!(!trace
                    .effects
                    .iter()
                    .all(|e| !matches!(e, FlowEffect::FetchMetadata(_))));
            } else {
                assert_eq!(fetched[0].as_str(), metadata_url);
            }
        }
    }

    fn reply() -> impl Strategy<Value = TokenReply> {
        prop_oneof![
            Just(TokenReply::Ok),
            Just(TokenReply::Unreachable),
            Just(TokenReply::Status(503, "")),
            Just(TokenReply::Status(400, "invalid_grant")),
            Just(TokenReply::Status(401, "invalid_client")),
        ]
    }

    fn world() -> impl Strategy<Value = World> {
        (
            prop_oneof![Just(AS_A), Just(AS_B)],
            prop::option::of(prop_oneof![
                Just(tokens_from_a()),
                Just(StoredTokens {
                    issuer: None,
                    ..tokens_from_a()
                }),
                Just(StoredTokens {
                    access_token: "at-other".into(),
                    expires_at: Some(NOW + 3_600_000),
                    ..tokens_from_a()
                }),
            ]),
            prop::option::of(prop_oneof![
                Just(client_of_a(Some(AS_A))),
                Just(client_of_a(None))
            ]),
            any::<bool>(),
            any::<bool>(),
            reply(),
        )
            .prop_map(
                |(prm_names, tokens, client, lock_free, metadata_up, token_reply)| World {
                    prm_names,
                    tokens,
                    client,
                    lock_free,
                    metadata_up,
                    token_reply,
                },
            )
    }

    proptest! {
        /// The fuzz target's world (answers of every kind, documents naming either
        /// server, endpoints on other hosts) under random input.
        #[test]
        fn the_fuzz_target_holds(data in proptest::collection::vec(any::<u8>(), 0..48)) {
            crate::fuzzing::sign_in_flow(&data);
        }

        /// Whatever is stored and whatever the servers answer: A's refresh token,
        /// client id and secret go to A only; a file is forgotten only after the
        /// token endpoint's definitive answer; the flow ends once.
        #[test]
        fn credentials_stay_with_their_issuer(world in world(), refreshing in any::<bool>(), static_a in any::<bool>()) {
            let mut opts = options();
            if static_a {
                opts.static_client = Some(client_of_a(Some(AS_A)));
            }
            let start = if refreshing { refresh() } else { sign_in() };
            let trace = run(opts, start, &world);
            for r in trace.token_requests() {
                if r.endpoint != format!("{AS_A}/token") {
                    prop_assert_ne!(&r.client_id, "client-a");
                    prop_assert_ne!(r.client_secret.as_deref(), Some("secret-a"));
                    prop_assert!(r.params.iter().all(|(_, v)| v != "rt-a"), "{:?}", r);
                }
            }
            for e in &trace.effects {
                if let FlowEffect::AwaitCallback { url, .. } = e {
                    if url.origin().ascii_serialization() != AS_A {
                        prop_assert!(url.query_pairs().all(|(_, v)| v != "client-a"));
                    }
                }
            }
            let definitive = matches!(world.token_reply, TokenReply::Status(_, e) if !e.is_empty());
            if !trace.forgets().is_empty() {
                prop_assert!(definitive);
            }
            let finished = trace.effects.iter().filter(|e| matches!(e, FlowEffect::Finished(_))).count();
            prop_assert_eq!(finished, 1);
        }
    }

    /// A device sign-in at A with nothing stored, the token endpoint answering
    /// `polls` in turn (then tokens): the effects, the waits and how it ended.
    fn device_sign_in(
        choice: DeviceChoice,
        offered: bool,
        polls: &[&str],
    ) -> (
        Vec<FlowEffect>,
        Vec<Duration>,
        Result<StoredTokens, AuthError>,
    ) {
        let mut flow = Flow::new(
            AuthOptions {
                device: choice,
                ..options()
            },
            FlowStart::SignIn {
                challenge: BearerChallenge::default(),
                step_up: None,
                refused: None,
            },
            secrets(),
        );
        let mut meta: serde_json::Value = serde_json::from_slice(&metadata(AS_A)).unwrap();
        if offered {
            meta["device_authorization_endpoint"] = format!("{AS_A}/device").into();
        }
        let mut polls = polls.iter();
        let (mut effects, mut waits) = (Vec::new(), Vec::new());
        let mut now = NOW;
        for _ in 0..200 {
            let Some(effect) = flow.poll_effect() else {
                break;
            };
            effects.push(effect.clone());
            let input = match effect {
                FlowEffect::TakeLock => FlowInput::LockTaken {
                    tokens: None,
                    client: None,
                    now_ms: now,
                },
                FlowEffect::FetchMetadata(url) if url.path().contains("protected-resource") => {
                    FlowInput::MetadataFetched(Fetched::Document(
                        format!(r#"{{"resource":"{MCP}","authorization_servers":["{AS_A}"]}}"#)
                            .into_bytes(),
                    ))
                }
                FlowEffect::FetchMetadata(_) => {
                    FlowInput::MetadataFetched(Fetched::Document(meta.to_string().into_bytes()))
                }
                FlowEffect::Register { body, .. } => {
                    assert_eq!(body["grant_types"][0], device::GRANT_TYPE);
                    assert!(body.get("redirect_uris").is_none());
                    FlowInput::Registered(Ok(HttpAnswer {
                        status: 201,
                        body: br#"{"client_id":"dev-client"}"#.to_vec(),
                    }))
                }
                FlowEffect::RequestDeviceCode(r) => {
                    assert_eq!(r.endpoint, format!("{AS_A}/device"));
                    assert_eq!(r.client_id, "dev-client");
                    FlowInput::DeviceCodeAnswered {
                        answer: Ok(HttpAnswer {
                            status: 200,
                            body: br#"{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://a.example/activate","expires_in":30,"interval":2}"#.to_vec(),
                        }),
                        now_ms: now,
                    }
                }
                FlowEffect::Wait(d) => {
                    waits.push(d);
                    now += d.as_millis() as u64;
                    FlowInput::Waited { now_ms: now }
                }
                FlowEffect::RequestToken(r) => {
                    assert!(r
                        .params
                        .contains(&("grant_type", device::GRANT_TYPE.into())));
                    assert!(r.params.contains(&("device_code", "dc".into())));
                    let answer = match polls.next() {
                        Some(error) => HttpAnswer {
                            status: 400,
                            body: format!(r#"{{"error":"{error}"}}"#).into_bytes(),
                        },
                        None => HttpAnswer {
                            status: 200,
                            body: token_body("at-dev", "rt-dev"),
                        },
                    };
                    FlowInput::TokenAnswered {
                        answer: Ok(answer),
                        now_ms: now,
                    }
                }
                FlowEffect::Finished(result) => return (effects, waits, result),
                FlowEffect::BindCallback(_) | FlowEffect::AwaitCallback { .. } => {
                    return (effects, waits, Err(AuthError::ListenerStopped))
                }
                _ => continue,
            };
            flow.handle(input);
        }
        panic!("the flow did not finish")
    }

    #[test]
    fn device_grant_polls_at_the_interval_and_slows_down_when_told() {
        let (effects, waits, result) = device_sign_in(
            DeviceChoice::Always,
            true,
            &[
                "authorization_pending",
                "slow_down",
                "authorization_pending",
            ],
        );
        let tokens = result.unwrap();
        assert_eq!(tokens.access_token, "at-dev");
        assert_eq!(tokens.issuer.as_deref(), Some(AS_A));
        let secs: Vec<u64> = waits.iter().map(|d| d.as_secs()).collect();
        assert_eq!(
            secs,
            [2, 2, 7, 7],
            "the interval, then 5 s more from the slow_down on"
        );
        assert!(effects
            .iter()
            .any(|e| matches!(e, FlowEffect::ShowDeviceCode(d) if d.user_code == "ABCD-EFGH")));
        let saved = effects.iter().find_map(|e| match e {
            FlowEffect::SaveClient(c) => Some(c.clone()),
            _ => None,
        });
        let saved = saved.expect("the registration is stored");
        assert!(saved.redirect_uris.is_empty(), "no redirect URI invented");
        assert_eq!(saved.extra["grant_types"][0], device::GRANT_TYPE);
    }

    #[test]
    fn device_grant_errors_end_the_sign_in() {
        let (_, _, r) = device_sign_in(DeviceChoice::Always, true, &["access_denied"]);
        assert!(
            matches!(r, Err(AuthError::Device(DeviceError::Denied))),
            "{r:?}"
        );
        let (_, _, r) = device_sign_in(
            DeviceChoice::Always,
            true,
            &["authorization_pending", "expired_token"],
        );
        assert!(
            matches!(r, Err(AuthError::Device(DeviceError::Expired(_)))),
            "{r:?}"
        );
        // The code lives 30 s: polls every 2 s stop at its end, whatever the server says.
        let pending = ["authorization_pending"; 40];
        let (effects, waits, r) = device_sign_in(DeviceChoice::Always, true, &pending);
        assert!(
            matches!(r, Err(AuthError::Device(DeviceError::Expired(_)))),
            "{r:?}"
        );
        assert_eq!(waits.len(), 15, "30 s at 2 s");
        let polls = effects
            .iter()
            .filter(|e| matches!(e, FlowEffect::RequestToken(_)))
            .count();
        assert_eq!(polls, 14);
        let (_, _, r) = device_sign_in(DeviceChoice::Always, true, &["invalid_grant"]);
        assert!(matches!(r, Err(AuthError::Token(_))), "{r:?}");
    }

    #[test]
    fn device_grant_is_used_only_when_chosen_and_offered() {
        let (_, _, r) = device_sign_in(DeviceChoice::Always, false, &[]);
        assert!(
            matches!(r, Err(AuthError::NoDeviceGrant(ref i)) if i == AS_A),
            "{r:?}"
        );
        let (effects, _, _) = device_sign_in(DeviceChoice::WhenOffered, false, &[]);
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, FlowEffect::BindCallback(_))),
            "not offered: the browser"
        );
        let (effects, _, r) = device_sign_in(DeviceChoice::WhenOffered, true, &[]);
        assert!(r.is_ok());
        assert!(!effects
            .iter()
            .any(|e| matches!(e, FlowEffect::BindCallback(_))));
        let (effects, _, _) = device_sign_in(DeviceChoice::Never, true, &[]);
        assert!(effects
            .iter()
            .any(|e| matches!(e, FlowEffect::BindCallback(_))));
    }
}
