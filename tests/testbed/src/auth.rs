//! OAuth 2.1 for the testbed: the configuration that turns it on ([`AuthConfig`]), what the
//! authorization server remembers (clients, codes, tokens) and what it records for tests.
//!
//! With [`crate::Config::auth`] set, the testbed is both halves of the MCP authorization
//! spec (2025-06-18 / 2025-11-25) on its one origin:
//!
//! - the **protected resource** ([`crate::resource`]): `/mcp`, `/sse` and `/messages` want
//!   `Authorization: Bearer`, answer `401`/`403` with `WWW-Authenticate` challenges, and
//!   publish RFC 9728 metadata;
//! - the **authorization server** ([`crate::authserver`]): RFC 8414 / OIDC discovery
//!   metadata, RFC 7591 registration, `/authorize` with mandatory PKCE S256 that approves
//!   at once (no UI, so a headless browser shim completes it), `/token` for the
//!   `authorization_code`, `refresh_token` and `client_credentials` grants, RFC 7009
//!   `/revoke`.
//!
//! Every knob exists so a black-box test can check one client behaviour of checklist §D:
//! discovery order and validation (D2–D7), registration (D9–D14), PKCE, `resource`, scope
//! selection, `state` and `iss` (D16–D22), refresh and step-up (D30–D33).
//!
//! Tokens, codes and client ids are 128-bit random hex strings with a readable prefix. They
//! are opaque: the resource server looks them up here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::state::fresh_session_id;

/// How long an authorization code can be redeemed.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// The longest access token lifetime honoured, so a typo cannot overflow an `Instant`.
const MAX_ACCESS_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What `GET /authorize` answers a request it finds valid. The variants other than
/// [`AuthorizeBehaviour::Approve`] make the callback one a careful client must refuse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthorizeBehaviour {
    /// Redirect with a code, the request's `state` and (with [`AuthConfig::send_iss`]) `iss`.
    #[default]
    Approve,
    /// Redirect with `error=access_denied` (and `state`, `iss`), as when the user says no.
    Deny,
    /// Redirect with this `error` code (and [`AuthConfig::error_description_override`]
    /// as its description), as identity providers do for a misconfigured app.
    Error(String),
    /// Redirect with a code but a `state` that is not the request's (checklist D21, E4).
    WrongState,
    /// Redirect with a code but `iss` naming another issuer (checklist D22).
    WrongIss,
    /// Redirect with a code and no `iss` although the metadata advertises it (D22).
    OmitIss,
    /// Redirect with a code and a correct `iss` even when [`AuthConfig::send_iss`] is off,
    /// so `iss` arrives unadvertised (D22: the client must still compare it).
    UnadvertisedIss,
}

/// A URL where the protected resource metadata (RFC 9728) is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrmUrl {
    /// `/.well-known/oauth-protected-resource/mcp` (and `…/sse` for the legacy transport):
    /// the well-known suffix inserted before the resource's path.
    PathAware,
    /// `/.well-known/oauth-protected-resource`, at the origin's root.
    Root,
    /// A path of the tester's choosing, such as `/custom/prm.json`; only findable through
    /// the challenge's `resource_metadata` (checklist D1, conformance `metadata-var3`).
    /// An absolute URL (`http://169.254.169.254/…`) is named as it is and served nowhere:
    /// a server pointing sign-in somewhere else.
    Custom(String),
}

/// A URL where the authorization server metadata is served, for an issuer `<origin><P>`
/// (`P` empty or like `/tenant1`). Without a path the two OpenID variants are one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsMetadataUrl {
    /// RFC 8414: `/.well-known/oauth-authorization-server<P>`.
    OAuth,
    /// OpenID Connect Discovery with the suffix inserted: `/.well-known/openid-configuration<P>`.
    OpenIdInserted,
    /// OpenID Connect Discovery appended to the issuer: `<P>/.well-known/openid-configuration`.
    OpenIdAppended,
}

/// How the testbed does OAuth when [`crate::Config::auth`] is set. Read afresh for every
/// request, like the rest of [`crate::Config`].
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The `scopes_supported` of both metadata documents; `None` leaves the field out, so a
    /// client has no scope to request (checklist D19 step 3, D20 `offline_access`).
    pub scopes_supported: Option<Vec<String>>,
    /// The `scope` of the `401` challenge, which a client must prefer to any other source
    /// (checklist D19 step 1); `None` sends no `scope`.
    pub challenge_scope: Option<String>,
    /// Space-separated scopes an access token must all carry for `tools/call`; one that
    /// lacks any gets `403 insufficient_scope` naming exactly these (step-up, D32).
    pub required_scope_for_tools_call: Option<String>,
    /// Scopes the authorization server never grants, though clients may ask: with one of
    /// them required for `tools/call`, every retry gets `403` again (retry limit, D33).
    pub withheld_scopes: Vec<String>,
    /// Where the protected resource metadata is served. The challenge's `resource_metadata`
    /// names the first of them. Empty: no metadata at all, as on a 2025-03-26 server (D7).
    pub prm_urls: Vec<PrmUrl>,
    /// Whether the `401`/`403` challenges carry `resource_metadata`; off, a client must
    /// probe the well-known URLs itself (D2, conformance `metadata-var1`/`var2`).
    pub challenge_resource_metadata: bool,
    /// A `resource` for the metadata to claim instead of `<origin>/mcp`, so a test can check
    /// that a client refuses a mismatch before authorizing (D3).
    pub prm_resource_override: Option<String>,
    /// A path for the issuer, like `/tenant1`, which moves the metadata to path-inserted
    /// well-known URLs (D5). `None`: the issuer is the bare origin.
    pub issuer_path: Option<String>,
    /// Which discovery URLs serve the authorization server metadata (D5); empty serves
    /// none, so a client must fall back to `/authorize`, `/token`, `/register` (D7).
    pub as_metadata_urls: Vec<AsMetadataUrl>,
    /// An `issuer` for the metadata to claim instead of the real one, so a test can check
    /// that a client refuses metadata whose issuer is not the one it asked (D6).
    pub metadata_issuer_override: Option<String>,
    /// Fields of the authorization server metadata replaced by these values (or added), such
    /// as an `authorization_endpoint` of `javascript:…`, so a test can check that a client
    /// refuses endpoints it must never open or post to (checklist D8, E9).
    pub metadata_overrides: serde_json::Map<String, Value>,
    /// An `error_description` for every OAuth error the authorization server answers (in a
    /// redirect or a JSON body) instead of its own, so a test can check a client never
    /// prints what a server sent raw, terminal escapes included (checklist E11).
    pub error_description_override: Option<String>,
    /// The metadata's `code_challenge_methods_supported`; `None` leaves it out, so a test
    /// can check that a client refuses to go on without PKCE support (D17).
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Whether dynamic client registration (RFC 7591) is offered; off, the metadata has no
    /// `registration_endpoint` and `POST /register` is `404` (D9 pre-registration).
    pub dcr: bool,
    /// Whether the metadata says `client_id_metadata_document_supported`; on, any `https`
    /// URL with a path is accepted as a public client's id without being fetched (D11).
    pub cimd: bool,
    /// The client authentication methods the token endpoint accepts, in preference order;
    /// registration assigns the first when the requested one is not among them (D14).
    pub token_endpoint_auth_methods: Vec<String>,
    /// Whether the metadata says `authorization_response_iss_parameter_supported` and the
    /// redirect carries `iss` (RFC 9207, D22).
    pub send_iss: bool,
    /// A confidential client known without registration, as `(client_id, client_secret)`:
    /// it may use any loopback redirect URI and the `client_credentials` grant (D9, D35).
    pub preregistered: Option<(String, String)>,
    /// What `/authorize` answers a valid request.
    pub authorize_behaviour: AuthorizeBehaviour,
    /// The `expires_in` of access tokens, in seconds (D30 proactive refresh).
    pub access_ttl_secs: u64,
    /// Whether the `authorization_code` grant returns a refresh token; off, a client must
    /// cope without one (D20 "MUST NOT assume").
    pub issue_refresh_tokens: bool,
    /// An issuer for the protected resource metadata to name instead of this testbed's
    /// own, such as another testbed's: the server "moved" to another authorization
    /// server (checklist D15, conformance `auth/authorization-server-migration`). The
    /// resource accepts that server's tokens once [`crate::Testbed::trust_tokens_of`] says so.
    pub authorization_server: Option<String>,
    /// A status for the authorization server metadata to answer instead of the
    /// document (a `503` while the server is down for maintenance).
    pub metadata_status: Option<u16>,
    /// Token answers carry an OIDC `id_token` (a JWT, unsigned, whose `exp` is
    /// `id_token_ttl_secs` away), which the resource also accepts as a bearer.
    pub issue_id_tokens: bool,
    /// The lifetime of ID tokens, in seconds.
    pub id_token_ttl_secs: u64,
    /// A client that authenticates with `private_key_jwt` (RFC 7523): its id and its
    /// EC P-256 public key (uncompressed point, see [`crate::jwt_keypair`]). Its
    /// assertion's signature, `iss`, `sub`, `aud` (the issuer) and `exp` are checked.
    pub jwt_client: Option<(String, Vec<u8>)>,
    /// The device authorization grant (RFC 8628): the metadata names
    /// `/device_authorization`, where a client gets a user code to enter at `/device`;
    /// `GET /device?user_code=…` is the user approving it.
    pub device_grant: bool,
    /// The `interval` of device authorizations, in seconds.
    pub device_interval_secs: u64,
    /// The `expires_in` of device codes, in seconds.
    pub device_expires_secs: u64,
    /// Errors the token endpoint answers the first device polls, in order, before it
    /// looks at the approval (`slow_down`, `expired_token`, `access_denied`, …); after
    /// them, `authorization_pending` until the user approved.
    pub device_poll_script: Vec<String>,
    /// Enterprise-managed authorization: an identity provider at `/idp/token` that
    /// exchanges this ID token (RFC 8693, `subject_token_type` id_token) for an ID-JAG
    /// naming the audience and resource asked for and the pre-registered client; the
    /// token endpoint then takes the JWT bearer grant (RFC 7523) with that ID-JAG from
    /// that client, once, for this issuer.
    pub idp_id_token: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            scopes_supported: None,
            challenge_scope: None,
            required_scope_for_tools_call: None,
            withheld_scopes: Vec::new(),
            prm_urls: vec![PrmUrl::PathAware, PrmUrl::Root],
            challenge_resource_metadata: true,
            prm_resource_override: None,
            issuer_path: None,
            as_metadata_urls: vec![
                AsMetadataUrl::OAuth,
                AsMetadataUrl::OpenIdInserted,
                AsMetadataUrl::OpenIdAppended,
            ],
            metadata_issuer_override: None,
            metadata_overrides: serde_json::Map::new(),
            error_description_override: None,
            code_challenge_methods_supported: Some(vec!["S256".to_owned()]),
            dcr: true,
            cimd: false,
            token_endpoint_auth_methods: vec![
                "none".to_owned(),
                "client_secret_post".to_owned(),
                "client_secret_basic".to_owned(),
            ],
            send_iss: true,
            preregistered: None,
            authorize_behaviour: AuthorizeBehaviour::Approve,
            access_ttl_secs: 3600,
            issue_refresh_tokens: true,
            authorization_server: None,
            metadata_status: None,
            issue_id_tokens: false,
            id_token_ttl_secs: 3600,
            jwt_client: None,
            device_grant: false,
            device_interval_secs: 1,
            device_expires_secs: 600,
            device_poll_script: Vec::new(),
            idp_id_token: None,
        }
    }
}

impl AuthConfig {
    /// The issuer path, normalized to start with `/` and not end with one; empty for none.
    pub(crate) fn normalized_issuer_path(&self) -> String {
        let path = self.issuer_path.as_deref().unwrap_or_default();
        let trimmed = path.trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }

    /// The issuer identifier: the origin plus [`AuthConfig::issuer_path`].
    pub(crate) fn issuer(&self, origin: &str) -> String {
        format!("{origin}{}", self.normalized_issuer_path())
    }

    /// The scopes of `requested` the server grants: those not withheld, once each.
    pub(crate) fn grant(&self, requested: Option<&str>) -> Option<String> {
        let mut granted: Vec<&str> = Vec::new();
        for scope in requested.unwrap_or_default().split_whitespace() {
            if !self.withheld_scopes.iter().any(|w| w == scope) && !granted.contains(&scope) {
                granted.push(scope);
            }
        }
        (!granted.is_empty()).then(|| granted.join(" "))
    }
}

/// One `POST /register` as the server saw and answered it.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The client metadata as sent (checklist D12, D13 check its fields).
    pub request: Value,
    /// The id issued; `None` when the registration was refused.
    pub client_id: Option<String>,
    /// The secret issued, for clients that authenticate with one.
    pub client_secret: Option<String>,
    /// The token endpoint authentication method the client was given.
    pub token_endpoint_auth_method: Option<String>,
    /// The redirect URIs registered.
    pub redirect_uris: Vec<String>,
    /// The RFC 7591 error code of a refusal (`invalid_redirect_uri`,
    /// `invalid_client_metadata`); `None` on success.
    pub error: Option<String>,
}

/// One `GET /authorize` as the server saw and answered it.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    /// Every query parameter, decoded, in order (tests check `resource`, `scope`,
    /// `code_challenge_method`, `state` and unexpected extras here).
    pub params: Vec<(String, String)>,
    /// The `Location` of the redirect; `None` when the server answered `400` instead (an
    /// unknown client or a redirect URI it will not send anything to).
    pub redirected_to: Option<String>,
    /// The OAuth error code answered (in the redirect or the `400`); `None` when a code
    /// was issued.
    pub error: Option<String>,
}

impl AuthorizeRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

/// One `POST /token` as the server saw and answered it.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// Every form parameter, decoded, in order, secrets included: the record is for the
    /// test and nothing else.
    pub params: Vec<(String, String)>,
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// The client the request claimed to be, from HTTP Basic or the form.
    pub client_id: Option<String>,
    /// How the client authenticated: `client_secret_basic`, `client_secret_post` or `none`;
    /// `None` when it named no client at all (checklist D14).
    pub client_auth: Option<String>,
    /// The first `resource` parameter (RFC 8707; D18).
    pub resource: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// The RFC 6749 error code answered; `None` when tokens were issued.
    pub error: Option<String>,
}

impl TokenRequest {
    /// The first value of a form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

/// One successful token response.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The access token handed out.
    pub access_token: String,
    /// The refresh token handed out with it, if any.
    pub refresh_token: Option<String>,
    /// The client it was issued to.
    pub client_id: String,
    /// The scopes granted.
    pub scope: Option<String>,
    /// The `resource` the token was requested for (the token request's, else the
    /// authorization request's).
    pub resource: Option<String>,
    /// The grant that produced it: `authorization_code`, `refresh_token`,
    /// `client_credentials`, or `minted` for [`crate::Testbed::mint_access_token`].
    pub grant_type: String,
    /// The `expires_in` sent.
    pub expires_in: u64,
}

/// The first value of `name` among decoded parameters.
fn find_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A registered client.
pub(crate) struct Client {
    /// Its secret; `None` for a public client (`none`).
    pub(crate) secret: Option<String>,
    /// How it must authenticate at the token endpoint.
    pub(crate) method: String,
    /// The redirect URIs an authorization request may name, matched exactly.
    pub(crate) redirect_uris: Vec<String>,
    /// Whether it registered for the device authorization grant.
    pub(crate) device: bool,
}

/// A device authorization waiting for its user.
pub(crate) struct DeviceGrant {
    /// The client that asked.
    pub(crate) client_id: String,
    /// What the user enters.
    pub(crate) user_code: String,
    /// The scopes asked for.
    pub(crate) scope: Option<String>,
    /// The `resource` asked for.
    pub(crate) resource: Option<String>,
    /// Whether the user approved at `/device`.
    pub(crate) approved: bool,
    /// When the code stops working.
    pub(crate) expires_at: Instant,
    /// Tokens were issued for it: it cannot be redeemed again.
    pub(crate) redeemed: bool,
}

/// One poll of the token endpoint with a device code, as the server saw it.
#[derive(Clone, Debug)]
pub struct DevicePoll {
    /// When it arrived.
    pub at: Instant,
    /// What it answered: an error code, or `tokens`.
    pub outcome: String,
}

/// An authorization code not yet redeemed, or redeemed once.
pub(crate) struct Code {
    /// The client it was issued to.
    pub(crate) client_id: String,
    /// The `redirect_uri` the authorization request sent, if it sent one; the token
    /// request must then repeat it (OAuth 2.1 §4.1.3).
    pub(crate) redirect_uri: Option<String>,
    /// The PKCE `code_challenge` (S256).
    pub(crate) challenge: String,
    /// The scopes granted.
    pub(crate) scope: Option<String>,
    /// The authorization request's `resource`.
    pub(crate) resource: Option<String>,
    /// When it was issued; it expires after [`CODE_LIFETIME`].
    pub(crate) issued_at: Instant,
    /// The grant its redemption started; a second redemption revokes that grant's tokens
    /// (RFC 6749 §4.1.2 "SHOULD revoke").
    pub(crate) redeemed: Option<u64>,
}

/// A live access token.
pub(crate) struct AccessToken {
    /// The client it was issued to.
    pub(crate) client_id: String,
    /// The scopes it carries.
    pub(crate) scope: Option<String>,
    /// When it stops working.
    pub(crate) expires_at: Instant,
    /// The grant it belongs to, so revoking a refresh token or reusing a code can take it.
    pub(crate) grant: u64,
}

/// A live refresh token.
pub(crate) struct RefreshToken {
    /// The client it was issued to; only that client may use it.
    pub(crate) client_id: String,
    /// The scopes of the grant; a refresh may narrow them, never widen.
    pub(crate) scope: Option<String>,
    /// The `resource` of the grant.
    pub(crate) resource: Option<String>,
    /// The grant it belongs to.
    pub(crate) grant: u64,
}

/// What a token request asks to have issued.
pub(crate) struct Issue<'a> {
    /// The client the tokens are for.
    pub(crate) client_id: &'a str,
    /// The scopes granted.
    pub(crate) scope: Option<String>,
    /// The resource they are for.
    pub(crate) resource: Option<String>,
    /// The grant type, for the record.
    pub(crate) grant_type: &'a str,
    /// Whether a refresh token comes with the access token.
    pub(crate) with_refresh: bool,
    /// The grant the tokens belong to; `None` starts a new one.
    pub(crate) grant: Option<u64>,
}

/// Everything the authorization server remembers, and its records for tests.
#[derive(Default)]
pub(crate) struct AuthState {
    /// Numbers ids, codes and tokens; mixed into each so they never repeat.
    serial: u64,
    /// Clients registered with `POST /register`, by id.
    pub(crate) clients: HashMap<String, Client>,
    /// Authorization codes by value.
    pub(crate) codes: HashMap<String, Code>,
    /// Access tokens by value; a revoked one is removed, an expired one kept (so the
    /// resource server can tell the client it expired).
    pub(crate) access: HashMap<String, AccessToken>,
    /// Refresh tokens by value; a rotated or revoked one is removed.
    pub(crate) refresh: HashMap<String, RefreshToken>,
    /// Every registration attempt.
    pub(crate) registrations: Vec<Registration>,
    /// Every authorization request.
    pub(crate) authorizations: Vec<AuthorizeRequest>,
    /// Every token request.
    pub(crate) token_requests: Vec<TokenRequest>,
    /// Every token response that issued tokens.
    pub(crate) issued: Vec<IssuedToken>,
    /// Device authorizations by device code.
    pub(crate) devices: HashMap<String, DeviceGrant>,
    /// Every poll with a device code.
    pub(crate) device_polls: Vec<DevicePoll>,
    /// Every token exchange at the identity provider.
    pub(crate) idp_requests: Vec<TokenRequest>,
    /// ID-JAGs the identity provider issued and nobody redeemed yet: the JWT and its claims.
    pub(crate) id_jags: HashMap<String, Value>,
}

impl AuthState {
    /// A fresh random value with a readable prefix, such as `at-<32 hex>`.
    pub(crate) fn fresh(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}-{}", fresh_session_id(self.serial))
    }

    /// A new grant number.
    pub(crate) fn new_grant(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Issues an access token (and maybe a refresh token), records it, and returns it.
    pub(crate) fn issue(&mut self, issue: Issue<'_>, ttl_secs: u64) -> IssuedToken {
        let grant = issue.grant.unwrap_or_else(|| self.new_grant());
        let access_token = self.fresh("at");
        let ttl = Duration::from_secs(ttl_secs).min(MAX_ACCESS_TTL);
        self.access.insert(
            access_token.clone(),
            AccessToken {
                client_id: issue.client_id.to_owned(),
                scope: issue.scope.clone(),
                expires_at: Instant::now() + ttl,
                grant,
            },
        );
        let refresh_token = issue.with_refresh.then(|| {
            let token = self.fresh("rt");
            self.refresh.insert(
                token.clone(),
                RefreshToken {
                    client_id: issue.client_id.to_owned(),
                    scope: issue.scope.clone(),
                    resource: issue.resource.clone(),
                    grant,
                },
            );
            token
        });
        let issued = IssuedToken {
            access_token,
            refresh_token,
            client_id: issue.client_id.to_owned(),
            scope: issue.scope,
            resource: issue.resource,
            grant_type: issue.grant_type.to_owned(),
            expires_in: ttl_secs,
        };
        self.issued.push(issued.clone());
        issued
    }

    /// Makes `alias` a bearer equal to the access token `of` (an ID token the resource
    /// accepts), valid for `ttl` from now.
    pub(crate) fn alias(&mut self, alias: String, of: &str, ttl: Duration) {
        if let Some(token) = self.access.get(of) {
            let token = AccessToken {
                client_id: token.client_id.clone(),
                scope: token.scope.clone(),
                expires_at: Instant::now() + ttl,
                grant: token.grant,
            };
            self.access.insert(alias, token);
        }
    }

    /// Forgets every token of `grant`, access and refresh.
    pub(crate) fn revoke_grant(&mut self, grant: u64) {
        self.access.retain(|_, token| token.grant != grant);
        self.refresh.retain(|_, token| token.grant != grant);
    }

    /// Forgets every access and refresh token.
    pub(crate) fn revoke_all(&mut self) {
        self.access.clear();
        self.refresh.clear();
    }

    /// Makes every access token expired now; refresh tokens stay valid.
    pub(crate) fn expire_access(&mut self) {
        let now = Instant::now();
        for token in self.access.values_mut() {
            token.expires_at = now;
        }
    }
}

/// Whether every scope of `needed` (space-separated) is among `granted`'s.
pub(crate) fn has_scopes(granted: Option<&str>, needed: &str) -> bool {
    let granted: Vec<&str> = granted.unwrap_or_default().split_whitespace().collect();
    needed
        .split_whitespace()
        .all(|scope| granted.contains(&scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_paths_are_normalized() {
        let mut auth = AuthConfig::default();
        assert_eq!(auth.issuer("http://o"), "http://o");
        auth.issuer_path = Some("tenant1/".to_owned());
        assert_eq!(auth.issuer("http://o"), "http://o/tenant1");
        auth.issuer_path = Some("/".to_owned());
        assert_eq!(auth.issuer("http://o"), "http://o");
    }

    #[test]
    fn grants_leave_out_withheld_and_repeated_scopes() {
        let auth = AuthConfig {
            withheld_scopes: vec!["admin".to_owned()],
            ..AuthConfig::default()
        };
        assert_eq!(auth.grant(Some("a admin b a")).as_deref(), Some("a b"));
        assert_eq!(auth.grant(Some("admin")), None);
        assert_eq!(auth.grant(None), None);
        assert!(has_scopes(Some("a b"), "b a"));
        assert!(!has_scopes(Some("a"), "a b"));
        assert!(has_scopes(None, ""));
    }

    #[test]
    fn revoking_a_grant_takes_its_tokens_only() {
        let mut state = AuthState::default();
        let issue = |grant_type| Issue {
            client_id: "c",
            scope: None,
            resource: None,
            grant_type,
            with_refresh: true,
            grant: None,
        };
        let first = state.issue(issue("authorization_code"), 60);
        let second = state.issue(issue("authorization_code"), 60);
        let grant = state.access[&first.access_token].grant;
        state.revoke_grant(grant);
        assert!(!state.access.contains_key(&first.access_token));
        assert!(!state.refresh.contains_key(&first.refresh_token.unwrap()));
        assert!(state.access.contains_key(&second.access_token));
        assert!(first.access_token.starts_with("at-"));
    }
}
