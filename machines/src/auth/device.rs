//! The device authorization grant (RFC 8628): what the device authorization
//! endpoint answers, and what each answer of the token endpoint means while the
//! user has not finished on their other device.
//!
//! The flow machine asks for a code, shows it, waits the server's `interval`
//! between polls (5 s more after each `slow_down`, §3.5), and stops at
//! `expired_token`, `access_denied` or the code's own lifetime.

use super::sanitize;
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// The grant type of the token requests that poll (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default."
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// §3.5: each `slow_down` adds 5 s to the interval "for this and all subsequent requests".
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Polls never come faster than this, whatever the server says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Nor slower than this.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// A device code is polled for at most this long, whatever its `expires_in`.
pub const MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// A user code longer than this is not one a person types.
const MAX_USER_CODE: usize = 64;

/// What the user is asked to do, and what the polls send.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    /// The secret the polls present (never shown).
    pub device_code: String,
    /// What the user types (sanitized: printable, at most 64 characters).
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: Url,
    /// The same with the code filled in, to open or to show as a link.
    pub verification_uri_complete: Option<Url>,
    /// How long the codes live (at most [`MAX_LIFETIME`]).
    pub lifetime: Duration,
    /// The time between polls, within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
    pub interval: Duration,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri.as_str())
            .field("lifetime", &self.lifetime)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Why no device code could be had. Messages carry sanitized server text only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// An error response, or a status other than 2xx.
    #[error("{}", refused(*.status, .error, .description))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` code, sanitized.
        error: String,
        /// `error_description`, sanitized.
        description: String,
    },
    /// Not JSON, or a required field missing or of the wrong type.
    #[error("the device authorization response is not valid: {0}")]
    Invalid(&'static str),
    /// The verification URI is not one to send a person to.
    #[error("the device authorization response names a verification URI that is not https ({0}); refused")]
    InsecureUri(String),
    /// The user said no (`access_denied`).
    #[error("the sign-in was declined on the other device (access_denied)")]
    Denied,
    /// The code expired before the user finished (`expired_token`, or its lifetime passed).
    #[error("the device code expired before the sign-in was finished; start again and enter the code within {} min", .0.as_secs().div_ceil(60))]
    Expired(Duration),
}

fn refused(status: u16, error: &str, description: &str) -> String {
    let text = format!(
        "the device authorization request was refused: HTTP {status} {error} {description}"
    )
    .trim()
    .to_owned();
    super::hints::with_fix(text, error, description)
}

#[derive(Deserialize)]
struct Wire {
    device_code: Option<String>,
    user_code: Option<String>,
    verification_uri: Option<String>,
    /// Some servers (Google) say `verification_url`.
    verification_url: Option<String>,
    verification_uri_complete: Option<String>,
    expires_in: Option<serde_json::Value>,
    interval: Option<serde_json::Value>,
}

fn seconds(v: &Option<serde_json::Value>) -> Option<u64> {
    v.as_ref().and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    })
}

/// Read the device authorization endpoint's answer (RFC 8628 §3.2, §3.3).
/// `allow_http`: a plain http verification URI to a remote host is accepted.
pub fn parse_response(
    status: u16,
    body: &[u8],
    allow_http: bool,
) -> Result<DeviceAuthorization, DeviceError> {
    if !(200..300).contains(&status) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |name: &str| sanitize(v.get(name).and_then(|e| e.as_str()).unwrap_or(""));
        return Err(DeviceError::Refused {
            status,
            error: text("error"),
            description: text("error_description"),
        });
    }
    // serde's messages would quote the values (the device code among them): not passed on.
    let wire: Wire = serde_json::from_slice(body).map_err(|_| DeviceError::Invalid("not JSON"))?;
    let device_code = wire
        .device_code
        .filter(|c| !c.is_empty())
        .ok_or(DeviceError::Invalid("no device_code"))?;
    let user_code = wire
        .user_code
        .map(|c| sanitize(&c))
        .filter(|c| !c.trim().is_empty() && c.chars().count() <= MAX_USER_CODE)
        .ok_or(DeviceError::Invalid("no usable user_code"))?;
    let uri = wire
        .verification_uri
        .or(wire.verification_url)
        .ok_or(DeviceError::Invalid("no verification_uri"))?;
    let verification_uri = person_url(&uri, allow_http)?;
    let verification_uri_complete = match wire.verification_uri_complete {
        Some(u) => Some(person_url(&u, allow_http)?),
        None => None,
    };
    let lifetime = seconds(&wire.expires_in)
        .map(Duration::from_secs)
        .ok_or(DeviceError::Invalid("no expires_in"))?
        .min(MAX_LIFETIME);
    let interval = seconds(&wire.interval)
        .map_or(DEFAULT_INTERVAL, Duration::from_secs)
        .clamp(MIN_INTERVAL, MAX_INTERVAL);
    Ok(DeviceAuthorization {
        device_code,
        user_code,
        verification_uri,
        verification_uri_complete,
        lifetime,
        interval,
    })
}

/// A URL a person is sent to: https, or http to loopback (or with `--allow-http`).
fn person_url(text: &str, allow_http: bool) -> Result<Url, DeviceError> {
    let shown = || sanitize(text);
    let url = Url::parse(text).map_err(|_| DeviceError::InsecureUri(shown()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || crate::transport::is_loopback_host(&url) => Ok(url),
        _ => Err(DeviceError::InsecureUri(shown())),
    }
}

/// What a poll's refusal means (RFC 8628 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// `authorization_pending`: ask again after the interval.
    Pending,
    /// `slow_down`: ask again after the interval plus 5 s, from now on.
    SlowDown,
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    Expired,
    /// Anything else: the sign-in fails with the token endpoint's error.
    Failed,
}

/// Classify a poll's error code.
pub fn classify(error: &str) -> Poll {
    match error {
        "authorization_pending" => Poll::Pending,
        "slow_down" => Poll::SlowDown,
        "access_denied" => Poll::Denied,
        "expired_token" => Poll::Expired,
        _ => Poll::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_answer_is_read_with_its_defaults_and_bounds() {
        let body = br#"{"device_code":"dc-secret","user_code":"WDJB-MJHT",
            "verification_uri":"https://example.com/device",
            "verification_uri_complete":"https://example.com/device?user_code=WDJB-MJHT",
            "expires_in":1800}"#;
        let d = parse_response(200, body, false).unwrap();
        assert_eq!(d.user_code, "WDJB-MJHT");
        assert_eq!(d.interval, DEFAULT_INTERVAL, "no interval: 5 s");
        assert_eq!(d.lifetime, MAX_LIFETIME, "30 min is capped at 15");
        assert!(!format!("{d:?}").contains("dc-secret"), "never shown");
        let google = br#"{"device_code":"x","user_code":"A","verification_url":"https://g.example/device","expires_in":"60","interval":0}"#;
        let d = parse_response(200, google, false).unwrap();
        assert_eq!(d.verification_uri.as_str(), "https://g.example/device");
        assert_eq!(d.interval, MIN_INTERVAL);
        assert_eq!(d.lifetime, Duration::from_secs(60));
    }

    #[test]
    fn unusable_answers_are_refused_without_quoting_secrets() {
        for (body, why) in [
            (
                &br#"{"user_code":"A","verification_uri":"https://e/x","expires_in":5}"#[..],
                "device_code",
            ),
            (
                br#"{"device_code":"s3cret","verification_uri":"https://e/x","expires_in":5}"#,
                "user_code",
            ),
            (
                br#"{"device_code":"s3cret","user_code":"A","expires_in":5}"#,
                "verification_uri",
            ),
            (
                br#"{"device_code":"s3cret","user_code":"A","verification_uri":"https://e/x"}"#,
                "expires_in",
            ),
            (b"not json", "JSON"),
        ] {
            let e = parse_response(200, body, false).unwrap_err().to_string();
            assert!(e.contains(why) && !e.contains("s3cret"), "{e}");
        }
        let js = br#"{"device_code":"d","user_code":"A","verification_uri":"javascript:alert(1)","expires_in":5}"#;
        assert!(matches!(
            parse_response(200, js, false),
            Err(DeviceError::InsecureUri(_))
        ));
        let http = br#"{"device_code":"d","user_code":"A","verification_uri":"http://idp.example/d","expires_in":5}"#;
        assert!(parse_response(200, http, false).is_err());
        assert!(parse_response(200, http, true).is_ok(), "--allow-http");
        let e = parse_response(
            400,
            br#"{"error":"invalid_client","error_description":"no \u001b[31mdevice"}"#,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid_client") && !e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn poll_errors_mean_what_rfc_8628_says() {
        assert_eq!(classify("authorization_pending"), Poll::Pending);
        assert_eq!(classify("slow_down"), Poll::SlowDown);
        assert_eq!(classify("access_denied"), Poll::Denied);
        assert_eq!(classify("expired_token"), Poll::Expired);
        assert_eq!(classify("invalid_grant"), Poll::Failed);
    }
}
