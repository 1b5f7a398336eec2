//! The network half of sign-in: performs what a [`Flow`] asks for — the lock,
//! metadata GETs, client registration, the callback listener and the browser, the
//! token endpoint — and feeds each result back. Every decision (which server, which
//! client, which credentials go where, what to forget) is the flow's; this file only
//! does it, with every answer read under [`MAX_OAUTH_BODY`].
//!
//! MCP 2025-06-18 / 2025-11-25 basic/authorization, RFC 9728, RFC 8414, RFC 7591,
//! RFC 7636, RFC 8707, RFC 9207, OAuth 2.1.

use crate::browser;
use crate::callback_listener::{self, Listener};
use crate::token_store::{now_ms, StoredTokens, TokenStore};
use crate::trace::Detail;
use base64::Engine;
use machines::auth::discovery::TokenAuth;
pub use machines::auth::flow::{AuthOptions, ResourceParam};
use machines::auth::flow::{
    Fetched, Flow, FlowEffect, FlowInput, FlowSecrets, FlowStart, HttpAnswer, TokenRequest,
};
pub use machines::auth::{AuthError, AuthStep};
use serde_json::json;
use std::time::{Duration, Instant};
use url::Url;

/// The most any authorization server document or answer may weigh (metadata,
/// registration, tokens): read while streaming, so a server that sends more costs
/// this much memory at most.
pub const MAX_OAUTH_BODY: usize = 1024 * 1024;

/// Fresh PKCE and `state` values from the OS generator.
pub fn secrets() -> FlowSecrets {
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let state = oauth2::CsrfToken::new_random();
    FlowSecrets {
        code_verifier: verifier.secret().clone(),
        code_challenge: challenge.as_str().to_owned(),
        state: state.secret().clone(),
    }
}

/// Perform `start` to its end: the tokens, or why not. The lock, the callback
/// listener and the printed-URL file live exactly as long as this call.
pub async fn run(
    http: &reqwest::Client,
    options: &AuthOptions,
    store: &TokenStore,
    start: FlowStart,
) -> Result<StoredTokens, AuthError> {
    let mut flow = Flow::new(options.clone(), start, secrets());
    let mut guard: Option<std::fs::File> = None;
    let mut listener: Option<Listener> = None;
    let url_file = UrlFile(store.authorize_url_path());
    let tracer = crate::trace::get();
    // Every effect is one step: a browser flow has a few dozen at most, a device
    // flow three per poll for at most 15 minutes at 1 s or more apart.
    for _ in 0..4096 {
        let Some(effect) = flow.poll_effect() else {
            break;
        };
        if let Some(t) = tracer {
            let (name, detail) = effect.trace();
            let mut record = json!({"kind": "effect", "machine": "sign_in", "effect": name});
            if let Some(detail) = detail {
                record["detail"] = detail.into();
            }
            t.emit(Detail::Step, record);
        }
        let began = std::time::Instant::now();
        let input = match effect {
            FlowEffect::TakeLock => match lock(store, options.auth_timeout).await {
                Ok(file) => {
                    guard = Some(file);
                    FlowInput::LockTaken {
                        tokens: store.load_tokens(),
                        client: store.load_client(),
                        now_ms: now_ms(),
                    }
                }
                Err(e) => FlowInput::LockFailed(e),
            },
            FlowEffect::FetchMetadata(url) => FlowInput::MetadataFetched(fetch(http, &url).await),
            FlowEffect::BindCallback(port) => match callback_listener::bind(port).await {
                Ok(l) => {
                    let port = l.port;
                    listener = Some(l);
                    FlowInput::CallbackBound(port)
                }
                Err(e) => FlowInput::CallbackBindFailed(e.to_string()),
            },
            FlowEffect::Register { endpoint, body } => {
                FlowInput::Registered(register(http, &endpoint, &body).await)
            }
            FlowEffect::SaveClient(client) => {
                if let Err(e) = store.save_client(&client) {
                    tracing::warn!("{e}");
                }
                tracing::debug!("saved the client registration");
                continue;
            }
            FlowEffect::AwaitCallback { url, state } => {
                let paste_file = store.pasted_callback_path();
                let _ = std::fs::remove_file(&paste_file);
                url_file.write(&url, &paste_file);
                if let Err(e) = browser::open(&url, options.allow_http) {
                    tracing::warn!("{e}");
                }
                let Some(l) = listener.take() else {
                    flow.handle(FlowInput::CallbackReceived(Err(AuthError::ListenerStopped)));
                    continue;
                };
                let path = options.callback_path.clone();
                let pasted = paste::wait(&paste_file, &path, &state);
                let served = callback_listener::serve(
                    l,
                    path.clone(),
                    state.clone(),
                    options.success_url.as_ref().map(|u| u.to_string()),
                );
                let waited = tokio::time::timeout(options.auth_timeout, async {
                    tokio::select! {
                        got = served => got,
                        got = pasted => Some(got),
                    }
                })
                .await;
                let _ = std::fs::remove_file(&paste_file);
                FlowInput::CallbackReceived(match waited {
                    Ok(Some(cb)) => Ok(cb),
                    Ok(None) => Err(AuthError::ListenerStopped),
                    Err(_) => Err(AuthError::NotCompleted(options.auth_timeout)),
                })
            }
            FlowEffect::RequestToken(request) => {
                let answer =
                    token_request(http, "token", &request, options.client_key.as_ref()).await;
                FlowInput::TokenAnswered {
                    answer,
                    now_ms: now_ms(),
                }
            }
            FlowEffect::RequestDeviceCode(request) => {
                let answer =
                    token_request(http, "device", &request, options.client_key.as_ref()).await;
                FlowInput::DeviceCodeAnswered {
                    answer,
                    now_ms: now_ms(),
                }
            }
            FlowEffect::ShowDeviceCode(d) => {
                url_file.write_device(&d);
                if let Some(complete) = &d.verification_uri_complete {
                    if browser::usable() {
                        if let Err(e) = browser::open(complete, options.allow_http) {
                            tracing::warn!("{e}");
                        }
                    }
                }
                continue;
            }
            FlowEffect::ReadAssertion => FlowInput::AssertionRead(read_assertion(options)),
            FlowEffect::Wait(d) => {
                tokio::time::sleep(d).await;
                FlowInput::Waited { now_ms: now_ms() }
            }
            FlowEffect::SaveTokens(tokens) => {
                if let Err(e) = store.save_tokens(&tokens) {
                    tracing::warn!("{e}");
                }
                continue;
            }
            FlowEffect::Forget { tokens, client } => {
                store.forget_files(tokens, client);
                continue;
            }
            FlowEffect::Finished(result) => {
                drop(listener);
                drop(guard);
                if result.is_ok() {
                    tracing::info!("signed in");
                }
                return result;
            }
        };
        match tracer {
            Some(t) => {
                let from = flow.expecting();
                let (name, detail) = input.trace();
                flow.handle(input);
                let mut record = json!({
                    "kind": "step", "machine": "sign_in", "from": from, "event": name,
                    "to": flow.expecting(), "took_us": began.elapsed().as_micros() as u64,
                });
                if let Some(detail) = detail {
                    record["detail"] = detail.into();
                }
                t.emit(Detail::Step, record);
            }
            None => flow.handle(input),
        }
    }
    Err(AuthError::ListenerStopped)
}

/// The identity assertion of enterprise-managed authorization: as given, or read
/// afresh from its file (which the company's tooling keeps current).
fn read_assertion(options: &AuthOptions) -> Result<machines::auth::flow::Assertion, AuthError> {
    use machines::auth::flow::AssertionSource;
    let Some(e) = &options.enterprise else {
        return Err(AuthError::Assertion("none was given".into()));
    };
    let text = match &e.assertion {
        AssertionSource::Value(v) => v.to_string(),
        AssertionSource::File(path) => {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(
                    std::fs::File::open(path).map_err(|err| {
                        AuthError::Assertion(format!("cannot read {}: {err}", path.display()))
                    })?,
                    MAX_OAUTH_BODY as u64,
                ),
                &mut text,
            )
            .map_err(|err| {
                AuthError::Assertion(format!("cannot read {}: {err}", path.display()))
            })?;
            text
        }
    };
    let text = text.trim();
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuthError::Assertion(
            "it is empty or not a single token (an ID token is one line without spaces)".into(),
        ));
    }
    Ok(machines::auth::flow::Assertion(text.to_owned()))
}

/// The file holding the authorization URL while a sign-in waits for the browser,
/// for hosts that never show stderr; removed when the flow ends.
struct UrlFile(std::path::PathBuf);

impl UrlFile {
    fn write(&self, url: &Url, paste_file: &std::path::Path) {
        let redirect = url
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let terminal = if paste::from_terminal() {
            " or here"
        } else {
            ""
        };
        let paste_hint = format!(
            "If the browser runs on another machine and cannot reach this one, copy the address it ends on (it starts with {redirect}) and paste it into {}{terminal}",
            paste_file.display()
        );
        match crate::store::write_private(&self.0, format!("{url}\n").as_bytes()) {
            Ok(()) => tracing::warn!(
                "Please authorize this client by visiting:\n{url}\n(the URL is also in {})\n{paste_hint}",
                self.0.display()
            ),
            Err(_) => tracing::warn!("Please authorize this client by visiting:\n{url}\n{paste_hint}"),
        }
    }
}

impl UrlFile {
    /// RFC 8628 §3.3: the user code and where to enter it, on stderr and in the file.
    fn write_device(&self, d: &machines::auth::device::DeviceAuthorization) {
        let minutes = d.lifetime.as_secs().div_ceil(60);
        let mut text = format!(
            "To sign in, open {} on any device and enter the code {} (within {minutes} min)",
            d.verification_uri, d.user_code
        );
        if let Some(complete) = &d.verification_uri_complete {
            text.push_str(&format!(",\nor open {complete} (the code is filled in)"));
        }
        match crate::store::write_private(&self.0, format!("{text}\n").as_bytes()) {
            Ok(()) => tracing::warn!("{text}\n(this is also in {})", self.0.display()),
            Err(_) => tracing::warn!("{text}"),
        }
    }
}

impl Drop for UrlFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn lock(store: &TokenStore, wait: Duration) -> Result<std::fs::File, AuthError> {
    let store = store.clone();
    let locked = tokio::task::spawn_blocking(move || store.lock(wait))
        .await
        .map_err(|e| AuthError::Store(e.to_string()))?;
    match locked {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(AuthError::Locked),
        Err(e) => Err(AuthError::Store(e.to_string())),
    }
}

/// Read a body, at most `cap` bytes, while it streams: a larger `Content-Length` is
/// refused before reading, a longer body as soon as it passes the cap.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    step: AuthStep,
) -> Result<Vec<u8>, AuthError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(AuthError::TooLarge(step));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(AuthError::TooLarge(step));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(AuthError::Unreachable {
                    step,
                    detail: crate::http::describe_error(e),
                })
            }
        }
    }
}

/// One authorization server exchange as the trace shows it (only while tracing):
/// the same `http` record as the MCP exchanges, with purpose `metadata`,
/// `registration` or `token`.
struct HttpNote {
    purpose: &'static str,
    method: &'static str,
    url: String,
    started: Instant,
    head: Option<(u16, Vec<String>, u64)>,
}

impl HttpNote {
    fn start(purpose: &'static str, method: &'static str, url: &str) -> Option<Self> {
        crate::trace::get()?;
        Some(HttpNote {
            purpose,
            method,
            url: Url::parse(url).map_or("(not a URL)".into(), |u| machines::trace::redact_url(&u)),
            started: Instant::now(),
            head: None,
        })
    }

    fn head(note: &mut Option<Self>, response: &reqwest::Response) {
        if let Some(n) = note {
            let names = response
                .headers()
                .keys()
                .map(|k| k.as_str().to_owned())
                .collect();
            let took = n.started.elapsed().as_micros() as u64;
            n.head = Some((response.status().as_u16(), names, took));
        }
    }

    fn end(note: Option<Self>, received: Result<usize, &AuthError>) {
        let (Some(n), Some(t)) = (note, crate::trace::get()) else {
            return;
        };
        let mut record = json!({
            "kind": "http", "purpose": n.purpose, "method": n.method, "url": n.url,
            "end_us": n.started.elapsed().as_micros() as u64,
        });
        if let Some((status, names, head_us)) = n.head {
            record["status"] = status.into();
            record["response_headers"] = names.into();
            record["head_us"] = head_us.into();
        }
        match received {
            Ok(bytes) => record["received"] = bytes.into(),
            Err(e) => record["error"] = e.to_string().into(),
        }
        t.emit(Detail::Step, record);
    }
}

/// GET a metadata document: 4xx is "not here", other failures end discovery.
async fn fetch(http: &reqwest::Client, url: &Url) -> Fetched {
    let mut note = HttpNote::start("metadata", "GET", url.as_str());
    let fetched = fetch_noted(http, url, &mut note).await;
    match &fetched {
        Fetched::Document(body) => HttpNote::end(note, Ok(body.len())),
        Fetched::NotFound => HttpNote::end(note, Ok(0)),
        Fetched::Failed(e) => HttpNote::end(note, Err(e)),
    }
    fetched
}

async fn fetch_noted(http: &reqwest::Client, url: &Url, note: &mut Option<HttpNote>) -> Fetched {
    let response = match http
        .get(url.clone())
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Fetched::Failed(AuthError::Unreachable {
                step: AuthStep::Discovery,
                detail: crate::http::describe_error(e),
            })
        }
    };
    HttpNote::head(note, &response);
    let status = response.status();
    if status.is_client_error() {
        return Fetched::NotFound;
    }
    if !status.is_success() {
        return Fetched::Failed(AuthError::MetadataStatus {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    match read_capped(response, MAX_OAUTH_BODY, AuthStep::Discovery).await {
        Ok(body) => Fetched::Document(body),
        Err(AuthError::TooLarge(_)) => {
            Fetched::Failed(AuthError::MetadataTooLarge(url.to_string()))
        }
        Err(e) => Fetched::Failed(e),
    }
}

/// POST an RFC 7591 registration request.
async fn register(
    http: &reqwest::Client,
    endpoint: &str,
    body: &serde_json::Value,
) -> Result<HttpAnswer, AuthError> {
    let mut note = HttpNote::start("registration", "POST", endpoint);
    let answer = register_noted(http, endpoint, body, &mut note).await;
    HttpNote::end(note, answer.as_ref().map(|a| a.body.len()));
    answer
}

async fn register_noted(
    http: &reqwest::Client,
    endpoint: &str,
    body: &serde_json::Value,
    note: &mut Option<HttpNote>,
) -> Result<HttpAnswer, AuthError> {
    let response = http
        .post(endpoint)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| AuthError::Unreachable {
            step: AuthStep::Registration,
            detail: crate::http::describe_error(e),
        })?;
    HttpNote::head(note, &response);
    let status = response.status().as_u16();
    let body = read_capped(response, MAX_OAUTH_BODY, AuthStep::Registration).await?;
    Ok(HttpAnswer { status, body })
}

/// POST to the token endpoint (or the device authorization endpoint, which takes
/// the same client authentication) with the client's authentication (OAuth 2.1 §2.4).
async fn token_request(
    http: &reqwest::Client,
    purpose: &'static str,
    request: &TokenRequest,
    client_key: Option<&machines::auth::flow::ClientKey>,
) -> Result<HttpAnswer, AuthError> {
    let mut note = HttpNote::start(purpose, "POST", &request.endpoint);
    let answer = token_request_noted(http, request, client_key, &mut note).await;
    HttpNote::end(note, answer.as_ref().map(|a| a.body.len()));
    answer
}

async fn token_request_noted(
    http: &reqwest::Client,
    request: &TokenRequest,
    client_key: Option<&machines::auth::flow::ClientKey>,
    note: &mut Option<HttpNote>,
) -> Result<HttpAnswer, AuthError> {
    let mut params = request.params.clone();
    let mut builder = http
        .post(&request.endpoint)
        .timeout(Duration::from_secs(30))
        .header("accept", "application/json");
    match (request.auth, &request.client_secret) {
        (TokenAuth::ClientSecretBasic, Some(secret)) => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&request.client_id), enc(secret));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let mut header = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| AuthError::BadClientCredentials)?;
            header.set_sensitive(true);
            builder = builder.header("authorization", header);
        }
        (TokenAuth::ClientSecretPost, Some(secret)) => {
            params.push(("client_id", request.client_id.clone()));
            params.push(("client_secret", secret.clone()));
        }
        (TokenAuth::PrivateKeyJwt, _) => {
            let Some(key) = client_key else {
                return Err(AuthError::ClientKey("no key was given".into()));
            };
            let jwt = crate::jwt::assertion(&request.client_id, &request.audience, &key.0)?;
            params.push(("client_id", request.client_id.clone()));
            params.push((
                "client_assertion_type",
                crate::jwt::ASSERTION_TYPE.to_owned(),
            ));
            params.push(("client_assertion", jwt));
        }
        // No client at all (an identity provider that asks for none): nothing to name.
        _ if request.client_id.is_empty() => {}
        _ => params.push(("client_id", request.client_id.clone())),
    }
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let response = builder
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| AuthError::Unreachable {
            step: AuthStep::Token,
            detail: crate::http::describe_error(e),
        })?;
    HttpNote::head(note, &response);
    let status = response.status().as_u16();
    let body = read_capped(response, MAX_OAUTH_BODY, AuthStep::Token).await?;
    Ok(HttpAnswer { status, body })
}

/// Headless loopback sign-in: the browser ran on another machine and could not reach
/// the callback listener, so the user pastes the address it ended on — into a file the
/// proxy names, or (in `mcp-remote-client`, on a terminal) into the terminal. What is
/// pasted goes through the very checks the listener applies: the callback path and
/// this flow's exact `state`, then `iss`, in the flow.
pub mod paste {
    use machines::auth::callback::{self, AuthorizationResponse, Verdict};
    use std::io::Read;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// How often the paste file is looked at.
    const POLL: Duration = Duration::from_millis(250);
    /// The most of a pasted file read: an address is far shorter.
    const MAX_PASTE: u64 = 16 * 1024;

    static TERMINAL: AtomicBool = AtomicBool::new(false);
    static LINES: OnceLock<Mutex<mpsc::UnboundedReceiver<String>>> = OnceLock::new();

    /// Read pasted addresses from standard input too (`mcp-remote-client` on a
    /// terminal: its stdin carries no JSON-RPC). A thread reads lines for the life of
    /// the process.
    pub fn accept_from_terminal() {
        if TERMINAL.swap(true, Ordering::SeqCst) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = LINES.set(Mutex::new(rx));
        let spawned = std::thread::Builder::new()
            .name("paste".into())
            .spawn(move || {
                for line in std::io::stdin().lines().map_while(Result::ok).take(1000) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        if spawned.is_err() {
            TERMINAL.store(false, Ordering::SeqCst);
        }
    }

    /// Whether pasted addresses are read from the terminal.
    pub fn from_terminal() -> bool {
        TERMINAL.load(Ordering::SeqCst)
    }

    /// Wait for a pasted address that is this flow's authorization response; tell the
    /// user about anything else pasted and keep waiting. Never ends otherwise.
    pub async fn wait(file: &Path, path: &str, state: &str) -> AuthorizationResponse {
        let mut interval = tokio::time::interval(POLL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let line = tokio::select! {
                _ = interval.tick() => take_file(file),
                line = next_line() => Some(line),
            };
            let Some(text) = line else { continue };
            match check(&text, path, state) {
                Ok(response) => {
                    tracing::info!("using the pasted sign-in address");
                    return response;
                }
                Err(why) => tracing::warn!("{why}"),
            }
        }
    }

    async fn next_line() -> String {
        let Some(lines) = LINES.get() else {
            return std::future::pending().await;
        };
        loop {
            // One reader at a time; a sign-in is the only one.
            let got = lines.lock().map(|mut rx| rx.try_recv());
            match got {
                Ok(Ok(line)) if !line.trim().is_empty() => return line,
                Ok(Ok(_)) => continue,
                Ok(Err(mpsc::error::TryRecvError::Disconnected)) | Err(_) => {
                    return std::future::pending().await
                }
                Ok(Err(mpsc::error::TryRecvError::Empty)) => {
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// The pasted file's text, once: it is removed as soon as it is read.
    fn take_file(file: &Path) -> Option<String> {
        let f = std::fs::File::open(file).ok()?;
        let mut bytes = Vec::new();
        let read = f.take(MAX_PASTE).read_to_end(&mut bytes);
        let _ = std::fs::remove_file(file);
        match read.ok().and_then(|_| file_text(&bytes)) {
            Some(text) if !text.trim().is_empty() => Some(text),
            Some(_) => None,
            None => {
                tracing::warn!("the pasted file is not text; paste the address again");
                None
            }
        }
    }

    /// A text file's text: UTF-8 (with or without a byte-order mark), or UTF-16 with
    /// its mark — what Windows PowerShell 5's `>` and `Out-File` write.
    pub fn file_text(bytes: &[u8]) -> Option<String> {
        let utf16 = |bytes: &[u8], unit: fn([u8; 2]) -> u16| {
            let units: Vec<u16> = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        };
        match bytes {
            [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec()).ok(),
            [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
            [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
            _ => String::from_utf8(bytes.to_vec()).ok(),
        }
    }

    /// The authorization response in `text`, or what to tell the user.
    pub fn check(text: &str, path: &str, state: &str) -> Result<AuthorizationResponse, String> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|_| {
            "what was pasted is not an address: paste the whole address the browser ended on (it starts with http://)".to_owned()
        })?;
        match callback::classify(url.path(), url.query(), path, state) {
            Verdict::Answered(response) => Ok(response),
            Verdict::NotFound => Err(format!(
                "the pasted address is not the sign-in callback (its path should be {path}); paste the address the browser ended on"
            )),
            Verdict::Rejected(_) => Err(
                "the pasted address belongs to another sign-in (its state does not match this one); paste the address of the latest sign-in"
                    .to_owned(),
            ),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn pasted_files_in_windows_encodings_are_read() {
            let address = "http://localhost:3334/oauth/callback?code=c&state=s1";
            let utf16le: Vec<u8> = [0xFF, 0xFE]
                .into_iter()
                .chain(
                    format!("{address}\r\n")
                        .encode_utf16()
                        .flat_map(u16::to_le_bytes),
                )
                .collect();
            let utf16be: Vec<u8> = [0xFE, 0xFF]
                .into_iter()
                .chain(address.encode_utf16().flat_map(u16::to_be_bytes))
                .collect();
            let bom8 = [&[0xEF, 0xBB, 0xBF][..], address.as_bytes()].concat();
            for bytes in [utf16le, utf16be, bom8, address.as_bytes().to_vec()] {
                let text = file_text(&bytes).expect("text");
                assert!(check(&text, "/oauth/callback", "s1").is_ok(), "{text:?}");
            }
            assert_eq!(
                file_text(&[0xFF, 0xFE, 0x00, 0xD8]),
                None,
                "a lone surrogate"
            );
            assert_eq!(file_text(&[0xC3, 0x28]), None, "not UTF-8");
        }

        #[test]
        fn only_this_flows_callback_is_taken() {
            let ok = check(
                " http://localhost:3334/oauth/callback?code=c&state=s1&iss=https%3A%2F%2Fa\n",
                "/oauth/callback",
                "s1",
            )
            .unwrap();
            assert!(ok.has_code());
            assert_eq!(ok.iss.as_deref(), Some("https://a"));
            let e = check(
                "http://localhost:3334/oauth/callback?code=c&state=old",
                "/oauth/callback",
                "s1",
            )
            .unwrap_err();
            assert!(e.contains("another sign-in"), "{e}");
            let e = check(
                "http://localhost:3334/?code=c&state=s1",
                "/oauth/callback",
                "s1",
            )
            .unwrap_err();
            assert!(e.contains("/oauth/callback"), "{e}");
            assert!(check("code=c&state=s1", "/oauth/callback", "s1").is_err());
        }
    }
}
