//! What to do about the identity providers' refusals users hit most: a redirect
//! URI the registration does not allow (Entra ID `AADSTS50011`), a resource the
//! provider does not know (`AADSTS9010010`, `invalid_target`), an unknown client
//! or wrong secret, consent an administrator must give, a refused scope. The
//! fix names the flag or the registration setting to change; it is appended to
//! the error the host and the log show.

/// The longest fix text (with its `; fix: ` prefix): what it adds to a message.
pub const MAX_FIX_CHARS: usize = 400;

/// The fix for an OAuth error (`error` code and sanitized `error_description`), if known.
pub fn fix_for(error: &str, description: &str) -> Option<&'static str> {
    let d = description.to_ascii_lowercase();
    let aad = |code: &str| description.contains(code);
    if aad("AADSTS50011")
        || (d.contains("redirect") && (d.contains("uri") || d.contains("url")))
        || error == "invalid_redirect_uri"
    {
        return Some(
            "the redirect URI (http://localhost:<port><callback path>) is not registered for this client: add it to the app's registration (for a fixed one, pin the port with [callback-port] and the path with --callback-path; Entra ID: a 'Mobile and desktop' platform with http://localhost), or use a client that allows loopback redirects",
        );
    }
    if aad("AADSTS9010010")
        || aad("AADSTS500011")
        || error == "invalid_target"
        || (d.contains("resource") && error == "invalid_request")
    {
        return Some(
            "the authorization server does not accept the resource parameter it was sent: pass --resource with the identifier it knows (for Entra ID the app ID URI), or --disable-resource-parameter",
        );
    }
    if aad("AADSTS65001") || error == "consent_required" || error == "interaction_required" {
        return Some(
            "the application needs consent: an administrator must grant it for your organisation (or sign in once interactively and accept)",
        );
    }
    if error == "invalid_client" || aad("AADSTS7000215") || aad("AADSTS700016") {
        return Some(
            "the client is unknown or its secret is wrong: check the client_id and client_secret of --static-oauth-client-info, or forget the stored registration with `mcp-remote-client <url> --clean` to register anew",
        );
    }
    if error == "invalid_scope" || aad("AADSTS70011") {
        return Some(
            "a requested scope was refused: set the scopes it allows with --static-oauth-client-metadata '{\"scope\": \"…\"}'",
        );
    }
    if error == "unauthorized_client" {
        return Some(
            "this client may not use this grant: allow it in the client's registration (grant types), or use another client",
        );
    }
    if error == "access_denied" {
        return Some("the sign-in was declined: sign in again and approve the access");
    }
    None
}

/// `text` with `; fix: …` appended when the error is one of those.
pub fn with_fix(text: String, error: &str, description: &str) -> String {
    match fix_for(error, description) {
        Some(fix) => format!("{text}; fix: {fix}"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_refusals_name_their_fix() {
        let redirect = fix_for("invalid_request", "AADSTS50011: The redirect URI 'http://localhost:4411/oauth/callback' specified in the request does not match").unwrap();
        assert!(redirect.contains("--callback-path"), "{redirect}");
        assert!(fix_for("invalid_target", "")
            .unwrap()
            .contains("--disable-resource-parameter"));
        assert!(fix_for(
            "invalid_request",
            "AADSTS9010010: The resource parameter provided in the request doesn't match"
        )
        .unwrap()
        .contains("--resource"));
        assert!(fix_for("consent_required", "")
            .unwrap()
            .contains("administrator"));
        assert!(fix_for("invalid_client", "")
            .unwrap()
            .contains("--static-oauth-client-info"));
        assert!(fix_for("invalid_scope", "")
            .unwrap()
            .contains("--static-oauth-client-metadata"));
        assert_eq!(fix_for("server_error", "try later"), None);
        assert_eq!(with_fix("x".into(), "server_error", ""), "x");
        for (error, description) in [
            ("invalid_request", "redirect uri"),
            ("invalid_target", ""),
            ("consent_required", ""),
            ("invalid_client", ""),
            ("invalid_scope", ""),
            ("unauthorized_client", ""),
            ("access_denied", ""),
        ] {
            let fix = fix_for(error, description).unwrap();
            assert!(
                fix.chars().count() + "; fix: ".len() <= MAX_FIX_CHARS,
                "{error}"
            );
        }
    }
}
