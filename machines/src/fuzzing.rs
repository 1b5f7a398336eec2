//! Entry points for the fuzz targets in `fuzz/`, kept here so that the targets
//! stay one-liners and the corpus can be replayed by ordinary tests on stable.
//! Each function must never panic, whatever the input.

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

/// Server-sent events, cut into chunks at every position given by the first byte.
pub fn sse(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let mut parser = SseParser::new(1024);
    for chunk in body.chunks(step) {
        if parser.push(chunk).is_err() {
            return;
        }
        while let Some(event) = parser.next_event() {
            let _ = jsonrpc::parse_incoming(jsonrpc::compact(event.data.into_bytes()));
        }
    }
}

/// Host and server messages through the Router: whatever arrives, each host
/// request is answered at most once, and after its deadline exactly once.
pub fn router(data: &[u8]) {
    use crate::router::{Router, RouterConfig, RouterEffect};
    use std::collections::HashMap;
    use std::time::{Duration, Instant};
    let mut router = Router::new(RouterConfig {
        request_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    let t0 = Instant::now();
    let mut now = t0;
    let mut answers: HashMap<String, u32> = HashMap::new();
    let mut requested: HashMap<String, u32> = HashMap::new();
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&op, body)) = line.split_first() else {
            continue;
        };
        out.clear();
        match op % 4 {
            0 => {
                if let Ok(incoming) = jsonrpc::parse_incoming(body.to_vec()) {
                    if let jsonrpc::Incoming::Single(m) = &incoming {
                        if m.kind == jsonrpc::Kind::Request {
                            if let Some(k) = &m.id_key {
                                *requested.entry(k.to_string()).or_default() += 1;
                            }
                        }
                    }
                    router.on_host_incoming(incoming, now, &mut out);
                }
            }
            1 => {
                if let Ok(jsonrpc::Incoming::Single(m)) = jsonrpc::parse_incoming(body.to_vec()) {
                    router.on_server_message(m, &mut out);
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(body.first().copied().unwrap_or(0)) * 100);
                router.on_tick(now, &mut out);
            }
            _ => {
                if let Ok(jsonrpc::Incoming::Single(m)) = jsonrpc::parse_incoming(body.to_vec()) {
                    if let Some(k) = m.id_key {
                        router.on_request_failed(&k, "fuzz", &mut out);
                    }
                }
            }
        }
        for e in &out {
            if let RouterEffect::ToHost(bytes) = e {
                let m = jsonrpc::Message::parse(bytes.clone())
                    .expect("the router writes valid JSON-RPC");
                if let (jsonrpc::Kind::Response, Some(k)) = (m.kind, m.id_key) {
                    let n = answers.entry(k.to_string()).or_default();
                    *n += 1;
                    let asked = requested.get(&k.to_string()).copied().unwrap_or(0);
                    assert!(*n <= asked.max(1), "more answers than requests for {k}");
                }
            }
        }
    }
}

/// `WWW-Authenticate` header values, one per line.
pub fn www_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.lines().collect();
    let _ = crate::auth::challenge::parse(&values);
    let _ = crate::auth::challenge::bearer(&values);
}

/// Authorization metadata documents and the checks applied to them.
pub fn metadata(data: &[u8]) {
    use crate::auth::discovery::{self, AuthServerMetadata, ProtectedResource};
    let mcp = url::Url::parse("https://mcp.example/api/mcp").expect("static");
    if let Ok(prm) = serde_json::from_slice::<ProtectedResource>(data) {
        let _ = discovery::check_resource(&prm, &mcp);
        for s in &prm.authorization_servers {
            if let Ok(u) = discovery::check_secure(s, false) {
                let _ = discovery::as_metadata_candidates(&u);
            }
        }
    }
    if let Ok(meta) = serde_json::from_slice::<AuthServerMetadata>(data) {
        let _ = discovery::check_as_metadata(&meta, "https://as.example", true);
        let _ = discovery::check_secure(&meta.authorization_endpoint, false);
        let _ = discovery::choose_token_auth(meta.token_endpoint_auth_methods_supported.as_deref());
        let _ =
            crate::auth::scope::initial_scope(None, None, None, meta.scopes_supported.as_deref());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = discovery::prm_candidates(&mcp, Some(text));
        let _ = crate::transport::resolve_endpoint(&mcp, text);
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
        message.chars().count() <= 2 * crate::auth::MAX_SHOWN_CHARS + 100,
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
/// and failed in one step, and whatever is held comes out at shutdown.
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
                reason: "r".into(),
            },
            5 => LinkEvent::EndpointReceived {
                endpoint: "http://h/m".into(),
            },
            6 => LinkEvent::LegacyRefused {
                status: 404,
                reason: "r".into(),
            },
            7 => LinkEvent::LegacyFailed { reason: "r".into() },
            8 => LinkEvent::LegacyStreamLost,
            9 => LinkEvent::SessionExpired {
                seq: arg,
                retried: arg % 2 == 0,
            },
            10 => LinkEvent::ReinitAnswered {
                session_id: None,
                protocol_version: None,
            },
            11 => LinkEvent::ReinitFailed { reason: "r".into() },
            12 => LinkEvent::InitializedDelivered,
            13 => LinkEvent::Unauthorized { seq: arg },
            14 => LinkEvent::TokenArrived,
            15 => LinkEvent::AuthFailed { reason: "r".into() },
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
        for e in &out.0 {
            if let LinkEffect::ScheduleRetry(d) = e {
                assert!(*d >= Duration::from_millis(250), "a retry without a delay");
            }
        }
    }
    let mut out = LinkOutbox::default();
    sm.handle_with_context(&LinkEvent::ShutdownRequested, &mut out);
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
        let event = match b % 8 {
            0 => GrantEvent::Needed(Need::Unauthorized { scope: None }),
            1 => GrantEvent::Needed(Need::InsufficientScope { scope: "x".into() }),
            2 => GrantEvent::Expiring,
            3 => GrantEvent::Refreshed,
            4 => GrantEvent::RefreshRejected,
            5 => GrantEvent::SignedIn,
            6 => GrantEvent::SignInFailed { reason: "r".into() },
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
