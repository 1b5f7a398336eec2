//! Entry points for the fuzz targets in `fuzz/`, kept here so that the targets
//! stay one-liners and the corpus can be replayed by ordinary tests on stable.
//! Each function asserts the invariants its doc states and must never panic
//! otherwise, whatever the input: a panic is a broken invariant or a crash.

use crate::framing::{Frame, LineFramer};
use crate::jsonrpc;
use crate::sse::SseParser;

/// Host stdin: framing then JSON-RPC classification of every line.
pub fn ndjson(data: &[u8]) {
    let mut framer = LineFramer::new(4096);
    for chunk in data.chunks(97) {
        framer.push(chunk);
        drain(&mut framer);
    }
    framer.finish();
    drain(&mut framer);
}

fn drain(framer: &mut LineFramer) {
    while let Some(frame) = framer.next_frame() {
        if let Frame::Line(line) = frame {
            match jsonrpc::parse_incoming(line) {
                Ok(_) => {}
                Err(e) => assert!(jsonrpc::is_json(&e.to_response())),
            }
        }
    }
}

/// The bound on one event the `sse` target parses with.
const SSE_MAX_EVENT: usize = 1024;

/// What a parser made of a whole body: the events up to the first error, the
/// error, and the stream state resumption needs.
#[derive(Debug, PartialEq, Eq)]
struct SseOutcome {
    events: Vec<crate::sse::SseEvent>,
    error: Option<crate::sse::SseError>,
    last_event_id: Option<String>,
    retry: Option<u64>,
    comments: u64,
}

/// Feeds `body` in the given chunks, stopping at the first error.
fn sse_parse<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> SseOutcome {
    let mut parser = SseParser::new(SSE_MAX_EVENT);
    let mut events = Vec::new();
    let mut error = None;
    for chunk in chunks {
        let pushed = parser.push(chunk);
        while let Some(event) = parser.next_event() {
            events.push(event);
        }
        if let Err(e) = pushed {
            error = Some(e);
            break;
        }
    }
    SseOutcome {
        events,
        error,
        last_event_id: parser.last_event_id().map(str::to_owned),
        retry: parser.retry(),
        comments: parser.comments(),
    }
}

/// Server-sent events: the same body cut into chunks at arbitrary points (every
/// `step` bytes, the first byte giving `step`; one byte at a time) gives the same
/// events, the same error and the same stream state as the body in one piece (a
/// network splits a stream anywhere), and no event is larger than the bound.
pub fn sse(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let whole = sse_parse(std::iter::once(body));
    for event in &whole.events {
        assert!(event.data.len() <= SSE_MAX_EVENT, "an event over the bound");
        let _ = jsonrpc::parse_incoming(jsonrpc::compact(event.data.clone().into_bytes()));
    }
    assert_eq!(
        sse_parse(body.chunks(step)),
        whole,
        "chunks of {step} bytes"
    );
    assert_eq!(sse_parse(body.chunks(1)), whole, "one byte at a time");
}

/// Host and server messages through the connection engine's host side, on a clock
/// the input drives from `start` (the caller's, so this code reads no clock): host
/// lines, answers on the oldest POST in progress, failed exchanges and time. Whatever
/// arrives, no id is answered more often than the host asked it, and once every
/// deadline has passed every request was answered exactly once (or cancelled by the
/// host, which then expects no answer).
pub fn router(start: std::time::Instant, data: &[u8]) {
    use crate::engine::{
        Engine, EngineConfig, Event, ExchangeId, HostConfig, NetworkError, ResponseHead, Transmit,
    };
    use std::collections::{BTreeMap, VecDeque};
    use std::time::Duration;
    const TIMEOUT: Duration = Duration::from_secs(5);
    let config = EngineConfig {
        url: url::Url::parse("http://mcp.test/mcp").expect("a valid URL"),
        max_message_bytes: 1 << 20,
        seed: 0,
        strategy: crate::link::Strategy::HttpOnly,
        remembered: None,
        ping_interval: None,
        headers_timeout: None,
        host: HostConfig {
            request_timeout: Some(TIMEOUT),
            ..Default::default()
        },
        trace: true,
        protocol: crate::engine::ProtocolMode::Auto,
        remembered_era: None,
        remembered_initialize: None,
    };
    let mut now = start;
    let mut engine = Engine::new(config, now);
    let mut posts: VecDeque<ExchangeId> = VecDeque::new();
    let mut answers: BTreeMap<String, u32> = BTreeMap::new();
    let mut requested: BTreeMap<String, u32> = BTreeMap::new();
    let mut cancelled = 0;
    // Drain the engine; count the answers it wrote for the host.
    fn drain(
        engine: &mut Engine,
        posts: &mut VecDeque<ExchangeId>,
        answers: &mut BTreeMap<String, u32>,
        requested: &BTreeMap<String, u32>,
    ) -> usize {
        let mut answered = 0;
        while let Some(t) = engine.poll_transmit() {
            match t {
                Transmit::Start(ex) if ex.body.is_some() => posts.push_back(ex.id),
                Transmit::Start(_) => {}
                Transmit::Abort(id) => posts.retain(|p| *p != id),
            }
        }
        while let Some(event) = engine.poll_event() {
            if let Event::ToHost(line) = event {
                let m = jsonrpc::Message::parse(line.bytes)
                    .expect("the engine writes valid JSON-RPC for the host");
                if let (jsonrpc::Kind::Response, Some(k)) = (m.kind, m.id_key) {
                    let n = answers.entry(k.to_string()).or_default();
                    *n += 1;
                    answered += 1;
                    let asked = requested.get(&k.to_string()).copied().unwrap_or(0);
                    assert!(*n <= asked, "{n} answers to {asked} requests with id {k}");
                }
            }
        }
        answered
    }
    for line in data.split(|&b| b == b'\n') {
        let Some((&op, body)) = line.split_first() else {
            continue;
        };
        let owed_before = engine.owed();
        let mut asked_now = 0;
        match op % 4 {
            0 => {
                let Ok(incoming) = jsonrpc::parse_incoming(body.to_vec()) else {
                    continue;
                };
                match &incoming {
                    jsonrpc::Incoming::Single(m) => {
                        asked_now += count_request(&mut requested, m);
                    }
                    jsonrpc::Incoming::Batch(items) => {
                        // Taken only where the negotiated version allows batches.
                        let version = engine.link().protocol_version();
                        if matches!(version, Some("2024-11-05" | "2025-03-26")) {
                            for item in items {
                                match item {
                                    Ok(m) => asked_now += count_request(&mut requested, m),
                                    // An invalid element with an id is answered under it.
                                    Err(e) => {
                                        let answer = jsonrpc::Message::parse(e.to_response())
                                            .expect("an error response parses");
                                        if let Some(k) = answer.id_key {
                                            *requested.entry(k.to_string()).or_default() += 1;
                                            asked_now += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                engine.handle_host(incoming, now);
            }
            1 => {
                // The server answers on the oldest POST in progress.
                if let Some(id) = posts.pop_front() {
                    let head = ResponseHead {
                        status: 200,
                        content_type: Some("application/json".into()),
                        ..Default::default()
                    };
                    engine.handle_head(id, head, now);
                    engine.handle_body(id, body, now);
                    engine.handle_end(id, Ok(()), now);
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(body.first().copied().unwrap_or(0)) * 100);
                engine.handle_timeout(now);
            }
            _ => {
                // The oldest POST in progress fails: refused at connect, or broken after.
                if let Some(id) = posts.pop_front() {
                    let error = match body.first().copied().unwrap_or(0) % 2 {
                        0 => NetworkError::Connect("connection refused".into()),
                        _ => NetworkError::Broken("connection reset".into()),
                    };
                    engine.handle_end(id, Err(error), now);
                }
            }
        }
        let answered = drain(&mut engine, &mut posts, &mut answers, &requested);
        // What left the table without an answer was cancelled by the host.
        cancelled += (owed_before + asked_now).saturating_sub(answered + engine.owed());
    }
    // Every deadline is over: nothing may still be owed.
    engine.handle_timeout(now + TIMEOUT);
    drain(&mut engine, &mut posts, &mut answers, &requested);
    assert_eq!(engine.owed(), 0, "a request outlived its deadline");
    let asked: u32 = requested.values().sum();
    let answered: u32 = answers.values().sum();
    assert_eq!(
        answered as usize + cancelled,
        asked as usize,
        "{asked} requests, {answered} answers, {cancelled} cancelled by the host"
    );
}

/// Counts a host request of the `router` target under its id (1 if it is one).
fn count_request(
    requested: &mut std::collections::BTreeMap<String, u32>,
    m: &jsonrpc::Message,
) -> usize {
    if let (jsonrpc::Kind::Request, Some(k)) = (m.kind, &m.id_key) {
        *requested.entry(k.to_string()).or_default() += 1;
        return 1;
    }
    0
}

/// Writes challenges back as one header value: `scheme name="value", …`, quoted
/// strings escaped (RFC 9110 §5.6.4).
fn render_challenges(challenges: &[crate::auth::challenge::Challenge]) -> String {
    let quote = |v: &str| {
        let mut q = String::from('"');
        for c in v.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    };
    challenges
        .iter()
        .map(|c| {
            let params: Vec<String> = c
                .params
                .iter()
                .map(|(name, value)| format!("{name}={}", quote(value)))
                .collect();
            // A parameter without a name (`=x`) right after the scheme would read as
            // a token68: a comma keeps it a parameter.
            let gap = match c.params.keys().next() {
                Some(name) if name.is_empty() => ", ",
                _ => " ",
            };
            format!("{}{gap}{}", c.scheme, params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `WWW-Authenticate` header values, one per line: schemes and parameter names
/// come out lower-cased and never empty (a scheme); the `Bearer` reading is the
/// first `bearer` challenge's parameters; and writing the challenges back and
/// reading them again gives the same challenges.
pub fn www_authenticate(data: &[u8]) {
    use crate::auth::challenge;
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.lines().collect();
    let challenges = challenge::parse(&values);
    for c in &challenges {
        assert!(!c.scheme.is_empty(), "a challenge without a scheme");
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for name in c.params.keys() {
            assert_eq!(*name, name.to_ascii_lowercase());
        }
    }
    let bearer = challenge::bearer(&values);
    let first = challenges.iter().find(|c| c.scheme == "bearer");
    assert_eq!(bearer.is_some(), first.is_some());
    if let (Some(b), Some(c)) = (&bearer, first) {
        let get = |k: &str| c.params.get(k).filter(|v| !v.is_empty());
        assert_eq!(b.resource_metadata.as_ref(), get("resource_metadata"));
        assert_eq!(b.scope.as_ref(), get("scope"));
        assert_eq!(b.error.as_ref(), get("error"));
        assert_eq!(b.error_description.as_ref(), get("error_description"));
    }
    let rendered = render_challenges(&challenges);
    assert_eq!(
        challenge::parse(&[&rendered]),
        challenges,
        "read back from {rendered:?}"
    );
}

/// Authorization metadata documents and the checks applied to them: whatever a
/// check accepts satisfies the rule it checks (the resource is this server or a
/// parent of it on its origin; the issuer is the one asked and PKCE S256 is
/// offered; an endpoint is https or loopback http; discovery and `endpoint` URLs
/// stay on their origin).
pub fn metadata(data: &[u8]) {
    use crate::auth::discovery::{self, AuthServerMetadata, ProtectedResource, TokenAuth};
    use crate::transport::{is_loopback_host, same_origin};
    let mcp = url::Url::parse("https://mcp.example/api/mcp").expect("static");
    let secure = |endpoint: &str| {
        if let Ok(u) = discovery::check_secure(endpoint, false) {
            assert!(
                u.scheme() == "https" || (u.scheme() == "http" && is_loopback_host(&u)),
                "{u} accepted as secure"
            );
            Some(u)
        } else {
            None
        }
    };
    if let Ok(prm) = serde_json::from_slice::<ProtectedResource>(data) {
        if discovery::check_resource(&prm, &mcp).is_ok() {
            if let Some(resource) = &prm.resource {
                let r = url::Url::parse(resource).expect("an accepted resource parses");
                assert!(same_origin(&r, &mcp), "{r} accepted for {mcp}");
                let rp = r.path().trim_end_matches('/');
                assert!(
                    rp.is_empty() || mcp.path() == rp || mcp.path().starts_with(&format!("{rp}/")),
                    "{r} accepted for {mcp}"
                );
            }
        }
        for s in &prm.authorization_servers {
            if let Some(u) = secure(s) {
                for candidate in discovery::as_metadata_candidates(&u) {
                    assert!(same_origin(&candidate, &u), "{candidate} for {u}");
                    assert!(candidate.query().is_none() && candidate.fragment().is_none());
                    assert!(candidate.path().contains("/.well-known/"), "{candidate}");
                }
            }
        }
    }
    if let Ok(meta) = serde_json::from_slice::<AuthServerMetadata>(data) {
        let issuer = "https://as.example";
        if discovery::check_as_metadata(&meta, issuer, true).is_ok() {
            assert_eq!(meta.issuer.as_deref(), Some(issuer));
        }
        if discovery::check_as_metadata(&meta, issuer, false).is_ok() {
            let methods = meta.code_challenge_methods_supported.as_deref();
            assert!(methods.unwrap_or_default().iter().any(|m| m == "S256"));
        }
        let _ = secure(&meta.authorization_endpoint);
        let _ = secure(&meta.token_endpoint);
        let supported = meta.token_endpoint_auth_methods_supported.as_deref();
        let chosen = discovery::choose_token_auth(supported);
        match supported {
            // What registration can choose (private_key_jwt needs --client-key).
            Some(list)
                if list.iter().any(|m| {
                    TokenAuth::from_name(m).is_some_and(|a| a != TokenAuth::PrivateKeyJwt)
                }) =>
            {
                assert!(
                    list.iter().any(|m| m == chosen.as_str()),
                    "{chosen:?} not offered"
                )
            }
            _ => assert_eq!(chosen, TokenAuth::ClientSecretBasic),
        }
        let scopes = meta.scopes_supported.as_deref();
        if let Some(scope) = crate::auth::scope::initial_scope(None, None, None, scopes) {
            panic!("a scope {scope:?} chosen from nothing but the server's list");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(candidates) = discovery::prm_candidates(&mcp, Some(text)) {
            assert_eq!(
                candidates.len(),
                1,
                "the challenge's URL is the only candidate"
            );
        }
        if let Ok(endpoint) = crate::transport::resolve_endpoint(&mcp, text) {
            assert!(matches!(endpoint.scheme(), "http" | "https"));
            assert!(same_origin(&endpoint, &mcp), "{endpoint} for {mcp}");
        }
    }
}

/// The redirect URI path the `callback_query` target plays against.
const CALLBACK_PATH: &str = "/oauth/callback";
/// The `state` of the flow the `callback_query` target plays (an oauth2 `CsrfToken`'s shape).
pub const CALLBACK_STATE: &str = "Xq8lV3n_Tz0-PpR2wKc7bA";
/// The issuer of the flow the `callback_query` target plays.
const CALLBACK_ISSUER: &str = "https://as.example/tenant";

/// The longest message an authorization server's answer may turn into: two
/// sanitized texts of the server and the proxy's own words.
fn assert_shown(message: &str) {
    assert!(
        message.chars().count()
            <= 2 * crate::auth::MAX_SHOWN_CHARS + 100 + crate::auth::hints::MAX_FIX_CHARS,
        "an unbounded message"
    );
    assert!(
        !message.chars().any(char::is_control),
        "a control character in a message: {message:?}"
    );
}

/// One request target to the callback listener (`/path?query`, as hyper splits
/// it): only the redirect path with this flow's `state` (the last one given) is
/// answered, an answered code is never empty, a code is handed out only when
/// `iss` allows it, and nothing grows beyond what percent-decoding can make of the input.
pub fn callback_query(data: &[u8]) {
    use crate::auth::callback::{self, Answer, Verdict};
    use crate::auth::discovery::same_issuer;
    let target = String::from_utf8_lossy(data);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*target, None),
    };
    let last_state = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| name == "state")
        .last()
        .map(|(_, value)| value.into_owned());
    let ours = last_state.as_deref() == Some(CALLBACK_STATE);
    // A byte of invalid UTF-8 decodes to U+FFFD, three bytes.
    let bound = 3 * data.len();
    match callback::classify(path, query, CALLBACK_PATH, CALLBACK_STATE) {
        Verdict::NotFound => assert_ne!(path, CALLBACK_PATH),
        Verdict::Rejected(_) => assert!(path == CALLBACK_PATH && !ours, "our state rejected"),
        Verdict::Answered(response) => {
            assert!(path == CALLBACK_PATH && ours, "answered without our state");
            assert_eq!(
                response.has_code(),
                matches!(response.answer, Answer::Code(_))
            );
            assert!(response.iss.as_ref().is_none_or(|i| i.len() <= bound));
            match &response.answer {
                Answer::Code(code) => assert!(!code.is_empty() && code.len() <= bound),
                Answer::Error { error, description } => assert!(
                    error.len() <= bound && description.as_ref().is_none_or(|d| d.len() <= bound)
                ),
                Answer::Empty => {}
            }
            for promised in [false, true] {
                match response.clone().into_code(CALLBACK_ISSUER, promised) {
                    Ok(code) => {
                        assert!(!code.is_empty());
                        match &response.iss {
                            Some(iss) => assert!(same_issuer(iss, CALLBACK_ISSUER)),
                            None => assert!(!promised, "RFC 9207: a promised iss is missing"),
                        }
                    }
                    Err(e) => assert_shown(&e.to_string()),
                }
            }
        }
    }
}

/// A client registration endpoint's answer, read as a success and as an error:
/// a client always has a non-empty `client_id`, a redirect URI, a token endpoint
/// method and the issuer; it reads back from its file unchanged; its `Debug`
/// does not depend on the secret.
pub fn registration(data: &[u8]) {
    use crate::auth::discovery::TokenAuth;
    use crate::auth::registration::{self, ClientInfo, Requested};
    let requested = Requested {
        redirect_uri: "http://localhost:3334/oauth/callback",
        token_endpoint_auth_method: TokenAuth::None,
        issuer: "https://as.example",
    };
    for status in [201, 200, 400] {
        match registration::parse_response(status, data, &requested) {
            Ok(client) => {
                assert!((200..300).contains(&status));
                assert!(!client.client_id.is_empty(), "a client without an id");
                assert!(!client.redirect_uris.is_empty());
                assert!(client.token_endpoint_auth_method.is_some());
                assert_eq!(client.issuer.as_deref(), Some(requested.issuer));
                let file = serde_json::to_vec(&client).expect("a client serializes");
                let again: ClientInfo =
                    serde_json::from_slice(&file).expect("a stored client reads back");
                assert_eq!(again, client, "the stored client changed on the way back");
                let mut other = client.clone();
                other.client_secret = client.client_secret.as_ref().map(|_| "x".into());
                assert_eq!(
                    format!("{client:?}"),
                    format!("{other:?}"),
                    "a secret in Debug"
                );
            }
            Err(e) => assert_shown(&e.to_string()),
        }
    }
}

/// A token endpoint's answer, read as a success and as errors: tokens always
/// have a non-empty access token and an expiry that never lies before the time
/// they were received; only an error status can mark a grant rejected; `Debug`
/// does not depend on the tokens.
pub fn token_response(data: &[u8]) {
    use crate::auth::token;
    for status in [200, 400, 401] {
        match token::parse_response(status, data) {
            Ok(tokens) => {
                assert!((200..300).contains(&status));
                assert!(!tokens.access_token.is_empty(), "an empty access token");
                for now in [0, 1_800_000_000_000, u64::MAX - 1] {
                    if let Some(at) = tokens.expires_at(now) {
                        assert!(at >= now, "an expiry in the past");
                    }
                }
                let mut other = tokens.clone();
                other.access_token = "x".into();
                other.refresh_token = tokens.refresh_token.as_ref().map(|_| "y".into());
                assert_eq!(
                    format!("{tokens:?}"),
                    format!("{other:?}"),
                    "a token in Debug"
                );
            }
            Err(e) => {
                assert!(!e.rejected() || !(200..300).contains(&status));
                assert_shown(&e.to_string());
            }
        }
    }
}

/// The Link machine under arbitrary event sequences: no message is both posted
/// and failed in one step, a retry waits, and at shutdown every message the host
/// sent that was neither posted, failed, discarded nor withdrawn is failed (held
/// messages come out), nothing is posted, and anything sent afterwards fails.
pub fn link_events(data: &[u8]) {
    use crate::link::{Link, LinkEffect, LinkEvent, LinkOutbox, Strategy, Transport};
    use statig::prelude::*;
    use std::time::Duration;
    let strategy = match data.first().copied().unwrap_or(0) % 4 {
        0 => Strategy::HttpFirst,
        1 => Strategy::SseFirst,
        2 => Strategy::HttpOnly,
        _ => Strategy::SseOnly,
    };
    let mut sm = Link::new(strategy, None::<Transport>)
        .with_seed(7)
        .state_machine();
    // Messages the host sent that the link has not let go of yet.
    let mut owed = std::collections::BTreeSet::new();
    for pair in data.chunks(2).skip(1) {
        let (op, arg) = (pair[0], u64::from(*pair.get(1).unwrap_or(&0)));
        let methods = [
            "initialize",
            "ping",
            "notifications/initialized",
            "tools/call",
        ];
        let event = match op % 20 {
            0 | 1 => {
                let m = methods[(arg % 4) as usize];
                let kind = if m.starts_with("notifications/") {
                    jsonrpc::Kind::Notification
                } else {
                    jsonrpc::Kind::Request
                };
                LinkEvent::HostSent {
                    seq: arg,
                    kind,
                    method: Some(m.into()),
                }
            }
            2 => LinkEvent::InitializeAnswered {
                session_id: Some("s".into()),
                protocol_version: None,
            },
            3 => LinkEvent::InitializeFailed,
            4 => LinkEvent::InitializeRefused {
                seq: arg,
                status: [400, 401, 404, 405, 500][(arg % 5) as usize],
                error: crate::error::RequestError::NoAnswer,
            },
            5 => LinkEvent::EndpointReceived {
                endpoint: "http://h/m".into(),
            },
            6 => LinkEvent::LegacyRefused {
                status: 404,
                error: crate::error::RequestError::NoAnswer,
            },
            7 => LinkEvent::LegacyFailed {
                error: crate::error::RequestError::NoEndpoint,
            },
            8 => LinkEvent::LegacyStreamLost,
            9 => LinkEvent::SessionExpired {
                seq: arg,
                retried: arg % 2 == 0,
            },
            10 => LinkEvent::ReinitAnswered {
                session_id: None,
                protocol_version: None,
            },
            11 => LinkEvent::ReinitFailed {
                error: crate::error::RequestError::NoAnswer,
            },
            12 => LinkEvent::InitializedDelivered,
            13 => LinkEvent::Unauthorized { seq: arg },
            14 => LinkEvent::TokenArrived,
            15 => LinkEvent::AuthFailed {
                error: crate::auth::AuthError::Locked,
            },
            16 => LinkEvent::Unreachable { seq: arg },
            17 => LinkEvent::RetryTimerFired,
            18 => LinkEvent::Busy {
                seq: arg,
                retry_after: Duration::from_secs(arg),
            },
            _ => LinkEvent::PeerSilent,
        };
        let mut out = LinkOutbox::default();
        sm.handle_with_context(&event, &mut out);
        if let LinkEvent::HostSent { seq, .. } = event {
            let posted = out
                .0
                .iter()
                .any(|e| matches!(e, LinkEffect::Post { seq: s, .. } if *s == seq));
            let failed = out
                .0
                .iter()
                .any(|e| matches!(e, LinkEffect::Fail { seq: s, .. } if *s == seq));
            assert!(!(posted && failed), "a message posted and failed at once");
        }
        match &event {
            LinkEvent::HostSent { seq, .. } => {
                owed.insert(*seq);
            }
            LinkEvent::Withdraw { seq } => {
                owed.remove(seq);
            }
            _ => {}
        }
        for e in &out.0 {
            match e {
                LinkEffect::ScheduleRetry(d) => {
                    assert!(*d >= Duration::from_millis(250), "a retry without a delay");
                }
                LinkEffect::Post { seq, .. }
                | LinkEffect::Fail { seq, .. }
                | LinkEffect::Discard { seq } => {
                    owed.remove(seq);
                }
                _ => {}
            }
        }
    }
    let mut out = LinkOutbox::default();
    sm.handle_with_context(&LinkEvent::ShutdownRequested, &mut out);
    let failed: std::collections::BTreeSet<u64> = out
        .0
        .iter()
        .filter_map(|e| match e {
            LinkEffect::Fail { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert!(
        owed.is_subset(&failed),
        "held at shutdown and never answered: {:?}",
        owed.difference(&failed).collect::<Vec<_>>()
    );
    assert!(
        !out.0.iter().any(|e| matches!(
            e,
            LinkEffect::Post { .. }
                | LinkEffect::PostReinitialize { .. }
                | LinkEffect::OpenGetStream
                | LinkEffect::OpenLegacyStream
        )),
        "shutdown sends or opens something: {:?}",
        out.0
    );
    let mut out = LinkOutbox::default();
    let late = LinkEvent::HostSent {
        seq: u64::MAX,
        kind: jsonrpc::Kind::Request,
        method: Some("tools/call".into()),
    };
    sm.handle_with_context(&late, &mut out);
    assert!(
        matches!(out.0.as_slice(), [LinkEffect::Fail { seq: u64::MAX, .. }]),
        "a message after shutdown: {:?}",
        out.0
    );
}

/// The Grant machine under arbitrary events: sign-ins stay bounded without success.
pub fn grant_events(data: &[u8]) {
    use crate::auth::grant::{
        Grant, GrantEffect, GrantEvent, GrantOutbox, Need, MAX_SIGN_INS, MAX_STEP_UPS,
    };
    use statig::prelude::*;
    let mut sm = Grant::default().state_machine();
    let (mut sign_ins, mut fails) = (0usize, 0usize);
    for &b in data {
        let event = match b % 9 {
            8 => GrantEvent::RefreshFailed {
                error: crate::auth::AuthError::Locked,
            },
            0 => GrantEvent::Needed(Need::Unauthorized { scope: None }),
            1 => GrantEvent::Needed(Need::InsufficientScope { scope: "x".into() }),
            2 => GrantEvent::Expiring,
            3 => GrantEvent::Refreshed,
            4 => GrantEvent::RefreshRejected,
            5 => GrantEvent::SignedIn,
            6 => GrantEvent::SignInFailed {
                error: crate::auth::AuthError::Locked,
            },
            _ => GrantEvent::Loaded {
                token: b & 0x10 != 0,
                refresh: b & 0x20 != 0,
                fresh: b & 0x40 != 0,
            },
        };
        let mut out = GrantOutbox::default();
        sm.handle_with_context(&event, &mut out);
        for e in out.0 {
            match e {
                GrantEffect::SignIn { .. } => sign_ins += 1,
                GrantEffect::Fail(_) => fails += 1,
                _ => {}
            }
        }
    }
    assert!(
        sign_ins <= (fails + 1) * (MAX_SIGN_INS + MAX_STEP_UPS) as usize,
        "a sign-in storm"
    );
}

/// One sign-in or refresh flow against two authorization servers whose answers the
/// input chooses (documents naming either server, garbage, statuses, network
/// failures), with credentials of server A stored. Asserts what the flow promises:
/// A's refresh token, client id and client secret go to A's origin only; a file is
/// forgotten only after the token endpoint's definitive answer; the flow ends once,
/// within a bounded number of steps.
pub fn sign_in_flow(data: &[u8]) {
    use crate::auth::callback::{Answer, AuthorizationResponse};
    use crate::auth::challenge::BearerChallenge;
    use crate::auth::flow::{
        AuthOptions, Fetched, Flow, FlowEffect, FlowInput, FlowSecrets, FlowStart, HttpAnswer,
        ResourceParam,
    };
    use crate::auth::registration::ClientInfo;
    use crate::auth::token::StoredTokens;
    use crate::auth::{AuthError, AuthStep};
    use std::time::Duration;
    use url::Url;

    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next().unwrap_or(0);
    let flags = next();
    let device_flags = next();
    let issuer = |b: u8| if b & 1 == 0 { A } else { B };
    let _ = B;
    let options = AuthOptions {
        mcp_url: Url::parse("https://mcp.example/mcp").expect("static"),
        allow_http: false,
        allow_private_network: false,
        // Bound to A, it is one of A's credentials; unbound, it belongs to the first
        // issuer it meets, and is not watched.
        static_client: (flags & 0x10 != 0).then(|| {
            if flags & 0x20 != 0 {
                ClientInfo {
                    client_id: "client-a".into(),
                    client_secret: Some("secret-a".into()),
                    issuer: Some(A.to_owned()),
                    ..ClientInfo::default()
                }
            } else {
                ClientInfo {
                    client_id: "client-static".into(),
                    client_secret: Some("secret-static".into()),
                    ..ClientInfo::default()
                }
            }
        }),
        static_metadata: None,
        client_metadata_url: None,
        resource: ResourceParam::Auto,
        authorize_params: Vec::new(),
        redirect_host: "localhost".into(),
        callback_path: "/cb".into(),
        callback_port: None,
        auth_timeout: Duration::from_secs(1),
        client_credentials: flags & 0x40 != 0,
        client_name: "fuzz".into(),
        success_url: None,
        use_id_token: false,
        token_endpoint: None,
        client_key: None,
        device: match device_flags & 3 {
            0 | 1 => crate::auth::flow::DeviceChoice::Never,
            2 => crate::auth::flow::DeviceChoice::WhenOffered,
            _ => crate::auth::flow::DeviceChoice::Always,
        },
        enterprise: None,
    };
    let offers_device = device_flags & 4 != 0;
    let tokens = StoredTokens {
        access_token: "at-a".into(),
        refresh_token: Some("rt-a".into()),
        expires_at: Some(if flags & 0x80 != 0 { u64::MAX } else { 0 }),
        issuer: (flags & 0x2 != 0).then(|| A.to_owned()),
        ..StoredTokens::default()
    };
    let client = ClientInfo {
        client_id: "client-a".into(),
        client_secret: Some("secret-a".into()),
        redirect_uris: vec!["http://localhost:3334/cb".into()],
        token_endpoint_auth_method: Some("client_secret_basic".into()),
        issuer: (flags & 0x4 != 0).then(|| A.to_owned()),
        ..ClientInfo::default()
    };
    let start = if flags & 0x8 != 0 {
        FlowStart::Refresh {
            held: tokens.clone(),
        }
    } else {
        FlowStart::SignIn {
            challenge: BearerChallenge::default(),
            step_up: None,
            refused: Some("at-a".into()),
        }
    };
    let secrets = FlowSecrets {
        code_verifier: "v".into(),
        code_challenge: "c".into(),
        state: "s".into(),
    };
    let mut flow = Flow::new(options, start, secrets);
    let mut definitive = false;
    let mut finished = 0;
    let answer = |kind: u8, body: Vec<u8>| -> Result<HttpAnswer, AuthError> {
        match kind % 4 {
            0 => Err(AuthError::Unreachable {
                step: AuthStep::Token,
                detail: "refused".into(),
            }),
            1 => Ok(HttpAnswer { status: 200, body }),
            2 => Ok(HttpAnswer {
                status: 400,
                body: br#"{"error":"invalid_grant"}"#.to_vec(),
            }),
            _ => Ok(HttpAnswer {
                status: 503,
                body: Vec::new(),
            }),
        }
    };
    let check = |request: &crate::auth::flow::TokenRequest| {
        let origin = Url::parse(&request.endpoint)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        // A's own metadata vouches for these two origins, and nothing else does.
        if origin != A && origin != "https://tok-a.example" {
            assert_ne!(
                request.client_id, "client-a",
                "A's client id sent to {origin}"
            );
            assert_ne!(
                request.client_secret.as_deref(),
                Some("secret-a"),
                "A's secret sent to {origin}"
            );
            assert!(
                request.params.iter().all(|(_, v)| v != "rt-a"),
                "A's refresh token sent to {origin}"
            );
        }
    };
    let mut now_ms = 2_000u64;
    let mut polls = 0u32;
    // A device sign-in polls until its code's lifetime (60 s here) at 1 s or more apart.
    for _ in 0..512 {
        let Some(effect) = flow.poll_effect() else {
            break;
        };
        let input = match effect {
            FlowEffect::RequestDeviceCode(request) => {
                check(&request);
                FlowInput::DeviceCodeAnswered {
                    answer: answer(
                        next(),
                        br#"{"device_code":"dc","user_code":"ABCD","verification_uri":"https://a.example/device","expires_in":60,"interval":1}"#
                            .to_vec(),
                    ),
                    now_ms,
                }
            }
            FlowEffect::ShowDeviceCode(_) => continue,
            FlowEffect::ReadAssertion => unreachable!("no enterprise identity provider here"),
            FlowEffect::Wait(d) => {
                assert!(d >= Duration::from_secs(1), "polls at least 1 s apart");
                now_ms += d.as_millis() as u64;
                FlowInput::Waited { now_ms }
            }
            FlowEffect::TakeLock => {
                let b = next();
                if b & 3 == 3 {
                    FlowInput::LockFailed(AuthError::Locked)
                } else {
                    FlowInput::LockTaken {
                        tokens: (b & 1 == 0).then(|| tokens.clone()),
                        client: (b & 2 == 0).then(|| client.clone()),
                        now_ms: 1_000,
                    }
                }
            }
            FlowEffect::FetchMetadata(url) => {
                let b = next();
                let origin = url.origin().ascii_serialization();
                let named = issuer(b >> 2);
                FlowInput::MetadataFetched(match b & 3 {
                    0 => Fetched::NotFound,
                    1 => Fetched::Failed(AuthError::MetadataStatus {
                        url: url.to_string(),
                        status: 500,
                    }),
                    _ if url.path().contains("protected-resource") => Fetched::Document(
                        format!(
                            r#"{{"resource":"https://mcp.example/mcp","authorization_servers":["{named}"]}}"#
                        )
                        .into_bytes(),
                    ),
                    2 => {
                        let device = if offers_device {
                            format!(r#","device_authorization_endpoint":"{origin}/device""#)
                        } else {
                            String::new()
                        };
                        Fetched::Document(
                            format!(
                                r#"{{"issuer":"{origin}","authorization_endpoint":"{origin}/authorize","token_endpoint":"{origin}/token","registration_endpoint":"{origin}/register","code_challenge_methods_supported":["S256"]{device}}}"#
                            )
                            .into_bytes(),
                        )
                    }
                    // RFC 8414 lets an issuer keep its endpoints on another host.
                    _ => {
                        let elsewhere = origin.replace("https://", "https://tok-");
                        Fetched::Document(
                            format!(
                                r#"{{"issuer":"{origin}","authorization_endpoint":"{elsewhere}/authorize","token_endpoint":"{elsewhere}/token","code_challenge_methods_supported":["S256"]}}"#
                            )
                            .into_bytes(),
                        )
                    }
                })
            }
            FlowEffect::BindCallback(port) => {
                if next() & 7 == 7 {
                    FlowInput::CallbackBindFailed("in use".into())
                } else {
                    FlowInput::CallbackBound(port.max(1))
                }
            }
            FlowEffect::Register { .. } => FlowInput::Registered(answer(
                next(),
                br#"{"client_id":"client-new","client_secret":"secret-new"}"#.to_vec(),
            )),
            FlowEffect::AwaitCallback { .. } => {
                let b = next();
                FlowInput::CallbackReceived(match b & 3 {
                    0 => Err(AuthError::NotCompleted(Duration::from_secs(1))),
                    _ => Ok(AuthorizationResponse {
                        iss: (b & 4 != 0).then(|| issuer(b >> 3).to_owned()),
                        answer: Answer::Code("code".into()),
                    }),
                })
            }
            FlowEffect::RequestToken(request) => {
                check(&request);
                let device = request
                    .params
                    .iter()
                    .any(|(k, v)| *k == "grant_type" && v == crate::auth::device::GRANT_TYPE);
                if device {
                    polls += 1;
                    let b = next();
                    let error = [
                        "authorization_pending",
                        "slow_down",
                        "access_denied",
                        "expired_token",
                    ][usize::from(b >> 4) % 4];
                    let answer = if b & 3 == 1 {
                        answer(1, br#"{"access_token":"at-new","expires_in":60}"#.to_vec())
                    } else {
                        Ok(HttpAnswer {
                            status: 400,
                            body: format!(r#"{{"error":"{error}"}}"#).into_bytes(),
                        })
                    };
                    flow.handle(FlowInput::TokenAnswered { answer, now_ms });
                    continue;
                }
                let b = next();
                definitive |= b % 4 == 2;
                FlowInput::TokenAnswered {
                    answer: answer(
                        b,
                        br#"{"access_token":"at-new","refresh_token":"rt-new","expires_in":60}"#
                            .to_vec(),
                    ),
                    now_ms: 2_000,
                }
            }
            FlowEffect::Forget { .. } => {
                assert!(definitive, "a file forgotten without a definitive answer");
                continue;
            }
            FlowEffect::SaveClient(_) | FlowEffect::SaveTokens(_) => continue,
            FlowEffect::Finished(_) => {
                finished += 1;
                continue;
            }
        };
        flow.handle(input);
    }
    assert_eq!(finished, 1, "the flow ends exactly once");
    assert!(
        polls <= 60,
        "no more polls than the code's lifetime allows: {polls}"
    );
    assert!(flow.poll_effect().is_none(), "nothing after the end");
}
