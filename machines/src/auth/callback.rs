//! The browser's return to the loopback redirect URI: which requests to the
//! callback listener are this flow's authorization response, and what that
//! response says (RFC 6749 §4.1.2 and §4.1.2.1, RFC 8252 §7.3).
//!
//! The CallbackListener hands the path and query of every request it gets to
//! [`classify`] and serves the page the [`Verdict`] names; only
//! [`Verdict::Answered`] is delivered, once, to the sign-in, which then asks
//! [`AuthorizationResponse::into_code`] for the code to redeem: `iss` first
//! (RFC 9207), then the server's error, then the code.
//!
//! Parameters are `application/x-www-form-urlencoded`; one given more than once
//! counts with its last value.

use crate::auth::discovery::same_issuer;
use crate::auth::sanitize;

/// What the callback listener does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Another path than the redirect URI's: `404`, and keep waiting.
    NotFound,
    /// The redirect URI's path, but not this flow's response: `400`, and keep waiting.
    Rejected(Rejection),
    /// This flow's authorization response: deliver it, once.
    Answered(AuthorizationResponse),
}

/// Why a request to the callback path is not this flow's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No `state` at all.
    MissingState,
    /// A `state` other than the one this flow sent: forged, or from an older flow.
    WrongState,
}

/// An authorization response whose `state` is this flow's.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationResponse {
    /// RFC 9207 `iss`: who says they issued the response, checked before anything else
    /// so that a response from another authorization server (a mix-up) is never redeemed.
    pub iss: Option<String>,
    /// What the response says.
    pub answer: Answer,
}

/// What an authorization response says.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// RFC 6749 §4.1.2: the authorization code; never empty.
    Code(String),
    /// RFC 6749 §4.1.2.1: the server's error, which wins over a code sent along with it.
    Error {
        /// The error code (`access_denied`, `invalid_scope`, …), as received.
        error: String,
        /// `error_description`, as received.
        description: Option<String>,
    },
    /// Neither an error nor a (non-empty) code.
    Empty,
}

impl std::fmt::Debug for AuthorizationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationResponse")
            .field("iss", &self.iss)
            .field("answer", &self.answer)
            .finish()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Invariant 5: the code is a secret until redeemed.
            Answer::Code(_) => f.write_str("Code([redacted])"),
            Answer::Error { error, description } => f
                .debug_struct("Error")
                .field("error", error)
                .field("description", description)
                .finish(),
            Answer::Empty => f.write_str("Empty"),
        }
    }
}

/// Why a delivered response gives no code to redeem. Messages carry at most
/// [`crate::auth::MAX_SHOWN_CHARS`] characters of the server's text each, and no
/// control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// RFC 9207 §2.4: `iss` names another issuer than the one the flow started with.
    #[error("the sign-in response came from another issuer; refused")]
    WrongIssuer,
    /// RFC 9207 §2.4: the metadata promises `iss` (`authorization_response_iss_parameter_supported`)
    /// and the response lacks it.
    #[error("the sign-in response lacks the issuer the server promised; refused")]
    MissingIssuer,
    /// RFC 6749 §4.1.2.1: the authorization server refused (the user declined, a bad scope, …).
    #[error("{}", refused(.error, .description))]
    Refused {
        /// The error code, sanitized.
        error: String,
        /// `error_description`, sanitized; empty when absent.
        description: String,
    },
    /// Neither a code nor an error.
    #[error("the sign-in response has no code")]
    NoCode,
}

fn refused(error: &str, description: &str) -> String {
    let text = format!("the authorization server refused the sign-in: {error} {description}")
        .trim()
        .to_owned();
    super::hints::with_fix(text, error, description)
}

impl AuthorizationResponse {
    /// Whether the browser is told that the sign-in worked (the code is still to be redeemed).
    pub fn has_code(&self) -> bool {
        matches!(self.answer, Answer::Code(_))
    }

    /// The code to redeem at the token endpoint, or why there is none.
    ///
    /// RFC 9207 §2.4: "clients MUST compare the value of the `iss` parameter to the
    /// issuer identifier of the authorization server where the authorization request
    /// was sent"; a client that knows the server sends `iss` "MUST reject
    /// authorization responses without the `iss` parameter". Both come before the
    /// rest of the response is looked at.
    pub fn into_code(self, issuer: &str, iss_promised: bool) -> Result<String, CallbackError> {
        match (&self.iss, iss_promised) {
            (Some(iss), _) if !same_issuer(iss, issuer) => return Err(CallbackError::WrongIssuer),
            (None, true) => return Err(CallbackError::MissingIssuer),
            _ => {}
        }
        match self.answer {
            Answer::Code(code) => Ok(code),
            Answer::Error { error, description } => Err(CallbackError::Refused {
                error: sanitize(&error),
                description: description.as_deref().map(sanitize).unwrap_or_default(),
            }),
            Answer::Empty => Err(CallbackError::NoCode),
        }
    }
}

/// Read one request to the callback listener: its `path` and raw `query` against
/// the redirect URI's path and the flow's `state`.
///
/// OAuth 2.1 §7.12 and MCP security best practices: the response must carry
/// exactly the `state` this flow sent; anything else is rejected and the
/// listener keeps waiting for the real response.
pub fn classify(
    path: &str,
    query: Option<&str>,
    expected_path: &str,
    expected_state: &str,
) -> Verdict {
    if path != expected_path {
        return Verdict::NotFound;
    }
    let (mut code, mut state, mut iss, mut error, mut description) = (None, None, None, None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match name.as_ref() {
            "code" => &mut code,
            "state" => &mut state,
            "iss" => &mut iss,
            "error" => &mut error,
            "error_description" => &mut description,
            _ => continue,
        };
        *slot = Some(value.into_owned());
    }
    match state {
        None => return Verdict::Rejected(Rejection::MissingState),
        Some(s) if !same_secret(&s, expected_state) => {
            return Verdict::Rejected(Rejection::WrongState)
        }
        Some(_) => {}
    }
    let answer = match (error, code) {
        (Some(error), _) => Answer::Error { error, description },
        (None, Some(code)) if !code.is_empty() => Answer::Code(code),
        (None, _) => Answer::Empty,
    };
    Verdict::Answered(AuthorizationResponse { iss, answer })
}

/// Equality without an early exit, so that the time a comparison takes tells a
/// local process guessing `state` nothing about how much of its guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/oauth/callback";
    const STATE: &str = "k3Jq-9vX_~.state";
    const ISSUER: &str = "https://as.example/tenant";

    fn verdict(target: &str) -> Verdict {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        classify(path, query, PATH, STATE)
    }

    fn answered(target: &str) -> AuthorizationResponse {
        match verdict(target) {
            Verdict::Answered(r) => r,
            other => panic!("{target}: {other:?}"),
        }
    }

    #[test]
    fn a_code_with_our_state_is_answered() {
        let r = answered(&format!("{PATH}?code=c0de&state={STATE}"));
        assert!(r.has_code());
        assert_eq!(r.iss, None);
        assert_eq!(r.into_code(ISSUER, false).unwrap(), "c0de");
    }

    #[test]
    fn only_the_exact_path_and_state_are_answered() {
        assert_eq!(verdict("/other?code=c&state=x"), Verdict::NotFound);
        assert_eq!(
            verdict(&format!("{PATH}/?code=c&state={STATE}")),
            Verdict::NotFound
        );
        assert_eq!(verdict("/OAUTH/callback?code=c"), Verdict::NotFound);
        assert_eq!(
            verdict(&format!("{PATH}?code=c")),
            Verdict::Rejected(Rejection::MissingState)
        );
        assert_eq!(verdict(PATH), Verdict::Rejected(Rejection::MissingState));
        for forged in [
            "",
            "k3Jq-9vX_~.stat",
            "k3Jq-9vX_~.statE",
            "k3Jq-9vX_~.state ",
        ] {
            assert_eq!(
                verdict(&format!("{PATH}?code=c&state={forged}")),
                Verdict::Rejected(Rejection::WrongState),
                "{forged:?}"
            );
        }
    }

    #[test]
    fn percent_encoding_and_plus_are_decoded() {
        let r = answered(&format!(
            "{PATH}?code=a%2Fb%2Bc+d&state=k3Jq%2D9vX%5F%7E%2Estate&iss=https%3A%2F%2Fas.example%2Ftenant"
        ));
        assert_eq!(r.iss.as_deref(), Some(ISSUER));
        assert_eq!(r.into_code(ISSUER, true).unwrap(), "a/b+c d");
    }

    #[test]
    fn the_last_of_repeated_parameters_counts() {
        let r = answered(&format!(
            "{PATH}?state=forged&code=one&code=two&state={STATE}"
        ));
        assert_eq!(r.into_code(ISSUER, false).unwrap(), "two");
        assert_eq!(
            verdict(&format!("{PATH}?state={STATE}&code=c&state=forged")),
            Verdict::Rejected(Rejection::WrongState)
        );
    }

    #[test]
    fn an_error_wins_and_is_shown_sanitized() {
        let r = answered(&format!(
            "{PATH}?error=access_denied&error_description=The+user+said+%1B%5B31mno&code=c&state={STATE}"
        ));
        assert!(!r.has_code());
        let e = r.into_code(ISSUER, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authorization server refused the sign-in: access_denied The user said [31mno; fix: the sign-in was declined: sign in again and approve the access"
        );
        let e = answered(&format!("{PATH}?error=server_error&state={STATE}"))
            .into_code(ISSUER, false)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authorization server refused the sign-in: server_error"
        );
        let long = "x".repeat(5000);
        let e = answered(&format!(
            "{PATH}?error={long}&error_description={long}&state={STATE}"
        ))
        .into_code(ISSUER, false)
        .unwrap_err();
        assert!(e.to_string().len() < 700);
    }

    #[test]
    fn no_code_or_an_empty_code_is_no_code() {
        for target in [
            format!("{PATH}?state={STATE}"),
            format!("{PATH}?code=&state={STATE}"),
        ] {
            let r = answered(&target);
            assert!(!r.has_code());
            assert_eq!(r.into_code(ISSUER, false), Err(CallbackError::NoCode));
        }
    }

    #[test]
    fn rfc_9207_iss_is_checked_first() {
        let with = |iss: &str| answered(&format!("{PATH}?code=c&state={STATE}&iss={iss}"));
        assert_eq!(
            with("https://evil.example").into_code(ISSUER, false),
            Err(CallbackError::WrongIssuer)
        );
        assert_eq!(
            answered(&format!(
                "{PATH}?error=access_denied&state={STATE}&iss=https://evil.example"
            ))
            .into_code(ISSUER, false),
            Err(CallbackError::WrongIssuer),
            "before the error is believed"
        );
        assert_eq!(
            answered(&format!("{PATH}?code=c&state={STATE}")).into_code(ISSUER, true),
            Err(CallbackError::MissingIssuer)
        );
        assert_eq!(
            with("https://as.example/tenant/").into_code(ISSUER, true),
            Err(CallbackError::WrongIssuer),
            "RFC 9207 §2.4: simple string comparison; a trailing slash is another issuer"
        );
    }

    #[test]
    fn the_code_stays_out_of_debug() {
        let r = answered(&format!("{PATH}?code=s3cr3t-c0de&state={STATE}"));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(path in ".{0,20}", query in ".{0,300}") {
            let _ = classify(&path, Some(&query), PATH, STATE);
        }

        /// Whatever else the query holds, it is answered exactly when its last
        /// `state` is ours, and an answered code is never empty.
        #[test]
        fn answered_only_with_our_state(
            pairs in proptest::collection::vec(
                (proptest::prop_oneof!["code", "state", "iss", "error", "error_description", "[a-z_]{0,6}"],
                 proptest::prop_oneof![proptest::strategy::Just(STATE.to_owned()), ".{0,12}"]),
                0..8)
        ) {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let last_state = pairs.iter().rev().find(|(k, _)| k == "state").map(|(_, v)| v.as_str());
            match classify(PATH, Some(&query), PATH, STATE) {
                Verdict::Answered(r) => {
                    proptest::prop_assert_eq!(last_state, Some(STATE));
                    if let Answer::Code(c) = &r.answer {
                        proptest::prop_assert!(!c.is_empty());
                    }
                    if let Err(e) = r.into_code(ISSUER, false) {
                        proptest::prop_assert!(!e.to_string().chars().any(char::is_control));
                    }
                }
                Verdict::Rejected(_) => proptest::prop_assert_ne!(last_state, Some(STATE)),
                Verdict::NotFound => proptest::prop_assert!(false, "same path"),
            }
        }
    }
}
