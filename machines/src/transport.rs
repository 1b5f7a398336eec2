//! Pure decisions about Streamable HTTP exchanges (MCP 2025-03-26 … 2025-11-25,
//! basic/transports §Streamable HTTP): what the headers of a request are, and
//! what an HTTP answer means.

use url::Url;

/// Dead connections are noticed by TCP itself, on every socket: a VPN that reconnects
/// with a new route (or a NAT that forgets a flow) kills established connections
/// silently — no FIN, no RST, no ACK ever again — and nothing at the HTTP level tells
/// such a connection from a slow tool call. Keep-alive probes start after this much
/// idleness…
pub const TCP_KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(2);
/// …go this often…
pub const TCP_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// …and this many unanswered ones close the connection (2 + 3 × 2 = 8 s where
/// `TCP_USER_TIMEOUT` is not available).
pub const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// Linux: a connection whose data or keep-alive probes go unacknowledged this long is
/// closed (`TCP_USER_TIMEOUT`, RFC 5482; it overrides the probe count). A live peer
/// acknowledges within a round trip, a slow tool call included: only a dead route is cut.
pub const TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// `Accept` of every POST: both types, MCP transports §Sending Messages item 2.
pub const POST_ACCEPT: &str = "application/json, text/event-stream";
/// `Accept` of the GET stream.
pub const GET_ACCEPT: &str = "text/event-stream";
/// Header carrying the session id (names are case-insensitive).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Header carrying the negotiated protocol version (MCP 2025-06-18+).
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// What the answer to a POST is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// 2xx without a body to read (202 Accepted, or 2xx with no known content type):
    /// the message was taken.
    Accepted,
    /// 2xx `application/json`: one message (or a batch) in the body.
    Json,
    /// 2xx `text/event-stream`: messages as SSE events.
    EventStream,
    /// 404 to a request that carried `Mcp-Session-Id`: the session is gone.
    SessionExpired,
    /// 401: the server wants credentials.
    Unauthorized,
    /// Any other status: the message was refused or failed.
    Failed {
        /// The HTTP status.
        status: u16,
    },
}

/// Classify the answer to a POST.
pub fn classify_post(
    status: u16,
    content_type: Option<&str>,
    sent_session_id: bool,
) -> PostOutcome {
    match status {
        200..=299 => match content_type.map(media_type) {
            Some(t) if t == "text/event-stream" => PostOutcome::EventStream,
            Some(t) if t == "application/json" || t.ends_with("+json") => PostOutcome::Json,
            _ => PostOutcome::Accepted,
        },
        // transports §Session Management item 4; a 404 without a session id is an
        // ordinary error (e.g. a stateless server, or a wrong path).
        404 if sent_session_id => PostOutcome::SessionExpired,
        401 => PostOutcome::Unauthorized,
        _ => PostOutcome::Failed { status },
    }
}

/// What the answer to the standalone GET is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetOutcome {
    /// An event stream.
    Stream,
    /// The server does not offer one (405 per the spec; other 4xx taken as the same):
    /// do not ask again.
    Refused,
    /// A transient failure (5xx, 408, 429, or a 2xx that is not a stream): retry later.
    Retry,
    /// 401: credentials needed.
    Unauthorized,
}

/// Classify the answer to a GET.
pub fn classify_get(status: u16, content_type: Option<&str>) -> GetOutcome {
    match status {
        200..=299 if content_type.map(media_type).as_deref() == Some("text/event-stream") => {
            GetOutcome::Stream
        }
        200..=299 => GetOutcome::Retry,
        401 => GetOutcome::Unauthorized,
        408 | 429 => GetOutcome::Retry,
        400..=499 => GetOutcome::Refused,
        _ => GetOutcome::Retry,
    }
}

/// The media type of a `Content-Type`, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether two URLs share scheme, host and port (RFC 6454 origin).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether a host names this machine (plain `http://` is fine there without `--allow-http`).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A session id must be visible ASCII (0x21–0x7E), transports §Session Management item 1.
pub fn valid_session_id(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Why a legacy `endpoint` event cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The data is not a URI reference.
    #[error("the server's endpoint event is not a valid URL")]
    Invalid,
    /// It names another origin: posting there would send the messages (and any
    /// credentials) to another server (TypeScript SDK `sse.ts`; checklist C2).
    #[error("the server's endpoint event points to another origin ({0}); refusing to post there")]
    CrossOrigin(String),
}

/// Resolve the data of a legacy `endpoint` event (MCP 2024-11-05 §HTTP with SSE)
/// against the stream's URL; only the stream's own origin is accepted.
pub fn resolve_endpoint(stream_url: &Url, data: &str) -> Result<Url, EndpointError> {
    let endpoint = stream_url
        .join(data.trim())
        .map_err(|_| EndpointError::Invalid)?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(EndpointError::Invalid);
    }
    if !same_origin(stream_url, &endpoint) {
        return Err(EndpointError::CrossOrigin(
            endpoint.origin().ascii_serialization(),
        ));
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_outcomes() {
        assert_eq!(classify_post(202, None, true), PostOutcome::Accepted);
        assert_eq!(
            classify_post(200, Some("Application/JSON; charset=utf-8"), false),
            PostOutcome::Json
        );
        assert_eq!(
            classify_post(200, Some("text/event-stream"), false),
            PostOutcome::EventStream
        );
        assert_eq!(classify_post(404, None, true), PostOutcome::SessionExpired);
        assert_eq!(
            classify_post(404, None, false),
            PostOutcome::Failed { status: 404 }
        );
        assert_eq!(classify_post(401, None, true), PostOutcome::Unauthorized);
    }

    #[test]
    fn get_outcomes() {
        assert_eq!(
            classify_get(200, Some("text/event-stream")),
            GetOutcome::Stream
        );
        assert_eq!(classify_get(405, None), GetOutcome::Refused);
        assert_eq!(classify_get(404, None), GetOutcome::Refused);
        assert_eq!(classify_get(503, None), GetOutcome::Retry);
        assert_eq!(classify_get(429, None), GetOutcome::Retry);
    }

    #[test]
    fn endpoints_resolve_against_the_stream_and_stay_on_its_origin() {
        let stream = Url::parse("https://x.example/mcp/sse?k=1").unwrap();
        assert_eq!(
            resolve_endpoint(&stream, "/messages?sessionId=abc")
                .unwrap()
                .as_str(),
            "https://x.example/messages?sessionId=abc"
        );
        assert_eq!(
            resolve_endpoint(&stream, "messages?s=1").unwrap().as_str(),
            "https://x.example/mcp/messages?s=1"
        );
        assert_eq!(
            resolve_endpoint(&stream, "https://x.example:443/m")
                .unwrap()
                .as_str(),
            "https://x.example/m"
        );
        assert!(matches!(
            resolve_endpoint(&stream, "https://evil.example/m"),
            Err(EndpointError::CrossOrigin(_))
        ));
        assert!(matches!(
            resolve_endpoint(&stream, "http://x.example/m"),
            Err(EndpointError::CrossOrigin(_))
        ));
        assert!(matches!(
            resolve_endpoint(&stream, "//evil.example/m"),
            Err(EndpointError::CrossOrigin(_))
        ));
        assert_eq!(
            resolve_endpoint(&stream, "javascript:alert(1)"),
            Err(EndpointError::Invalid)
        );
    }

    #[test]
    fn origins_and_loopback() {
        let a = Url::parse("https://x.example/mcp").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://x.example:443/other").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://y.example/mcp").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://x.example/mcp").unwrap()
        ));
        for u in [
            "http://localhost:3000/",
            "http://127.0.0.1/",
            "http://[::1]:8/",
            "http://127.9.9.9/",
        ] {
            assert!(is_loopback_host(&Url::parse(u).unwrap()), "{u}");
        }
        assert!(!is_loopback_host(
            &Url::parse("http://example.com/").unwrap()
        ));
        assert!(valid_session_id(b"abc-123"));
        assert!(!valid_session_id(b"a b"));
        assert!(!valid_session_id(b""));
    }
}
