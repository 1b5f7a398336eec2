//! Where authorization metadata lives and what of it to trust
//! (RFC 9728 protected resource metadata, RFC 8414 / OIDC authorization server
//! metadata, the MCP 2025-03-26 fallbacks).

use crate::transport::{is_loopback_host, same_origin};
use serde::Deserialize;
use url::Url;

/// Why discovery cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A URL from the server does not parse.
    #[error("the server gave an invalid URL: {0}")]
    InvalidUrl(String),
    /// RFC 9728 §3.3: the metadata names another resource.
    #[error("the protected resource metadata is for {found}, not for this server ({expected}); refusing to sign in")]
    ResourceMismatch {
        /// What the metadata says.
        found: String,
        /// This server.
        expected: String,
    },
    /// The metadata lists no authorization server.
    #[error("the protected resource metadata lists no authorization server")]
    NoAuthorizationServer,
    /// RFC 8414 §3.3: `issuer` must be the one the metadata was fetched for.
    #[error("the authorization server metadata is for issuer {found}, expected {expected}")]
    IssuerMismatch {
        /// What the metadata says.
        found: String,
        /// What was asked for.
        expected: String,
    },
    /// MCP authorization §Authorization Code Protection: PKCE S256 must be supported.
    #[error("the authorization server does not support PKCE with S256; refusing to sign in")]
    NoPkce,
    /// RFC 9728 §3.2: `resource` is required.
    #[error("the protected resource metadata has no `resource`; refusing to sign in")]
    NoResource,
    /// A discovered URL points into a private network while the MCP server is public
    /// (checklist D8/E9: a server must not steer the proxy at the user's own network).
    #[error("refusing {url}: the server points sign-in at a {class} address (pass --allow-private-network if that is intended)")]
    PrivateAddress {
        /// The URL refused (discovery URLs carry no secret).
        url: String,
        /// What kind of address it is.
        class: AddressClass,
    },
    /// An endpoint over plain http to a remote host.
    #[error("refusing the non-https endpoint {0} (pass --allow-http to accept it)")]
    Insecure(String),
}

/// RFC 9728 protected resource metadata (the fields the proxy uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct ProtectedResource {
    /// The resource identifier.
    #[serde(default)]
    pub resource: Option<String>,
    /// Issuers of the authorization servers.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes the resource understands.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

/// RFC 8414 / OIDC authorization server metadata (the fields the proxy uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct AuthServerMetadata {
    /// The issuer identifier.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Where the browser goes.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are redeemed.
    pub token_endpoint: String,
    /// RFC 7591 dynamic registration.
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// Scopes the server knows.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// How clients may authenticate at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Client ID metadata documents accepted.
    #[serde(default)]
    pub client_id_metadata_document_supported: Option<bool>,
    /// RFC 9207: the `iss` parameter is sent with authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Grant types.
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
    /// RFC 8628 §4: where a device asks for a user code.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// RFC 9728 §3.1: candidate URLs of the protected resource metadata, in order.
/// The `resource_metadata` of the challenge, when present, is the only one.
pub fn prm_candidates(
    mcp_url: &Url,
    from_header: Option<&str>,
) -> Result<Vec<Url>, DiscoveryError> {
    if let Some(h) = from_header {
        return Ok(vec![mcp_url
            .join(h)
            .map_err(|_| DiscoveryError::InvalidUrl(h.to_owned()))?]);
    }
    let mut out = Vec::new();
    let path = mcp_url.path().trim_end_matches('/');
    if !path.is_empty() {
        out.push(well_known(mcp_url, "oauth-protected-resource", path));
    }
    out.push(well_known(mcp_url, "oauth-protected-resource", ""));
    Ok(out)
}

/// MCP authorization §Authorization Server Metadata Discovery: candidates, in order.
pub fn as_metadata_candidates(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        return vec![
            well_known(issuer, "oauth-authorization-server", ""),
            well_known(issuer, "openid-configuration", ""),
        ];
    }
    let mut appended = issuer.clone();
    appended.set_query(None);
    appended.set_fragment(None);
    appended.set_path(&format!("{path}/.well-known/openid-configuration"));
    vec![
        well_known(issuer, "oauth-authorization-server", path),
        well_known(issuer, "openid-configuration", path),
        appended,
    ]
}

fn well_known(base: &Url, name: &str, path: &str) -> Url {
    let mut u = base.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.set_path(&format!("/.well-known/{name}{path}"));
    u
}

/// RFC 8707 / MCP §Canonical Server URI: scheme and host lower-case (the URL
/// parser already does that), no fragment, no trailing slash on a non-root path.
pub fn canonical_resource(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    let mut s = u.to_string();
    if u.path() != "/" && s.ends_with('/') && u.query().is_none() {
        s.pop();
    }
    if u.path() == "/" && u.query().is_none() {
        s.pop();
    }
    s
}

/// RFC 9728 §3.3: the metadata must be about this server. Like the SDKs, a
/// resource on the same origin whose path is a prefix of the server's path is accepted.
pub fn check_resource(prm: &ProtectedResource, mcp_url: &Url) -> Result<(), DiscoveryError> {
    let Some(resource) = prm.resource.as_deref() else {
        return Err(DiscoveryError::NoResource);
    };
    let mismatch = || DiscoveryError::ResourceMismatch {
        found: resource.to_owned(),
        expected: canonical_resource(mcp_url),
    };
    let r = Url::parse(resource).map_err(|_| mismatch())?;
    if !same_origin(&r, mcp_url) {
        return Err(mismatch());
    }
    let rp = r.path().trim_end_matches('/');
    let mp = mcp_url.path().trim_end_matches('/');
    if mp == rp || mp.starts_with(&format!("{rp}/")) || rp.is_empty() {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// Where an address sits, for [`check_public`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Anything else, including every host name but the few below (names are not
    /// resolved here).
    Public,
    /// 127.0.0.0/8, ::1, `localhost`.
    Loopback,
    /// RFC 1918, RFC 6598 shared space, RFC 4193 unique local.
    Private,
    /// 169.254.0.0/16 and fe80::/10, where cloud metadata services answer
    /// (169.254.169.254, `metadata.google.internal`), and 0.0.0.0 / ::.
    LinkLocal,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private-network",
            AddressClass::LinkLocal => "link-local or cloud-metadata",
        })
    }
}

/// The class of an address.
pub fn ip_class(ip: core::net::IpAddr) -> AddressClass {
    match ip {
        core::net::IpAddr::V4(a) => v4_class(a),
        core::net::IpAddr::V6(a) => v6_class(a),
    }
}

fn v4_class(a: core::net::Ipv4Addr) -> AddressClass {
    let [x, y, ..] = a.octets();
    if a.is_loopback() {
        AddressClass::Loopback
    } else if a.is_link_local() || a.is_unspecified() {
        AddressClass::LinkLocal
    } else if a.is_private() || (x == 100 && (64..128).contains(&y)) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn v6_class(a: core::net::Ipv6Addr) -> AddressClass {
    if let Some(m) = a.to_ipv4_mapped() {
        return v4_class(m);
    }
    let first = a.segments()[0];
    if a.is_loopback() {
        AddressClass::Loopback
    } else if a.is_unspecified() || first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The class of `url`'s host (names are not resolved here: see [`ip_class`] for
/// what a name resolves to).
pub fn address_class(url: &Url) -> AddressClass {
    match url.host() {
        Some(url::Host::Ipv4(a)) => v4_class(a),
        Some(url::Host::Ipv6(a)) => v6_class(a),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                AddressClass::Loopback
            } else if d == "metadata.google.internal" || d == "metadata" {
                AddressClass::LinkLocal
            } else {
                AddressClass::Public
            }
        }
        None => AddressClass::Public,
    }
}

/// Checklist D8/E9: a URL the server or its authorization server named may point at
/// a loopback, private or link-local address only when the MCP server itself is on
/// such a network (a local or intranet deployment); a public server cannot steer the
/// proxy at the user's router, intranet or the cloud metadata service.
pub fn check_public(url: &Url, mcp_url: &Url) -> Result<(), DiscoveryError> {
    let class = address_class(url);
    if class == AddressClass::Public || address_class(mcp_url) != AddressClass::Public {
        return Ok(());
    }
    Err(DiscoveryError::PrivateAddress {
        url: url.to_string(),
        class,
    })
}

/// Whether two issuer identifiers name the same authorization server: RFC 8414
/// §3.3 and RFC 9207 §2.4 compare them as strings, exactly.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a == b
}

/// Check metadata fetched for `issuer`: the issuer is identical (when strict) and PKCE S256 is there.
pub fn check_as_metadata(
    meta: &AuthServerMetadata,
    issuer: &str,
    strict_issuer: bool,
) -> Result<(), DiscoveryError> {
    if strict_issuer {
        match meta.issuer.as_deref() {
            Some(found) if found == issuer => {}
            Some(found) => {
                return Err(DiscoveryError::IssuerMismatch {
                    found: found.to_owned(),
                    expected: issuer.to_owned(),
                })
            }
            None => {
                return Err(DiscoveryError::IssuerMismatch {
                    found: String::new(),
                    expected: issuer.to_owned(),
                })
            }
        }
    }
    match &meta.code_challenge_methods_supported {
        Some(methods) if methods.iter().any(|m| m == "S256") => Ok(()),
        _ => Err(DiscoveryError::NoPkce),
    }
}

/// MCP 2025-03-26 §Fallbacks: without metadata, the endpoints sit at the server's origin.
pub fn fallback_metadata(mcp_url: &Url) -> AuthServerMetadata {
    let at = |p: &str| well_known_free(mcp_url, p);
    AuthServerMetadata {
        issuer: Some(canonical_resource(&origin_url(mcp_url))),
        authorization_endpoint: at("/authorize"),
        token_endpoint: at("/token"),
        registration_endpoint: Some(at("/register")),
        code_challenge_methods_supported: Some(vec!["S256".into()]),
        ..AuthServerMetadata::default()
    }
}

fn origin_url(u: &Url) -> Url {
    let mut o = u.clone();
    o.set_path("/");
    o.set_query(None);
    o.set_fragment(None);
    o
}

fn well_known_free(u: &Url, path: &str) -> String {
    let mut o = origin_url(u);
    o.set_path(path);
    o.to_string()
}

/// MCP 2025-03-26: the authorization base URL is the server URL without its path.
pub fn legacy_metadata_url(mcp_url: &Url) -> Url {
    well_known(mcp_url, "oauth-authorization-server", "")
}

/// OAuth 2.1 §1.5: endpoints must be https, except loopback, or when allowed.
pub fn check_secure(endpoint: &str, allow_http: bool) -> Result<Url, DiscoveryError> {
    let u = Url::parse(endpoint).map_err(|_| DiscoveryError::InvalidUrl(endpoint.to_owned()))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" if allow_http || is_loopback_host(&u) => Ok(u),
        "http" => Err(DiscoveryError::Insecure(endpoint.to_owned())),
        _ => Err(DiscoveryError::InvalidUrl(endpoint.to_owned())),
    }
}

/// How the client authenticates at the token endpoint (OAuth 2.1 §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// Public client: `client_id` in the form only.
    None,
    /// `client_id` and `client_secret` in the form.
    ClientSecretPost,
    /// HTTP Basic with the encoded id and secret.
    ClientSecretBasic,
    /// A JWT signed with the client's private key (RFC 7523 §2.2).
    PrivateKeyJwt,
}

impl TokenAuth {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAuth::None => "none",
            TokenAuth::ClientSecretPost => "client_secret_post",
            TokenAuth::ClientSecretBasic => "client_secret_basic",
            TokenAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Parse an RFC 7591 name.
    pub fn from_name(name: &str) -> Option<TokenAuth> {
        match name {
            "none" => Some(TokenAuth::None),
            "client_secret_post" => Some(TokenAuth::ClientSecretPost),
            "client_secret_basic" => Some(TokenAuth::ClientSecretBasic),
            "private_key_jwt" => Some(TokenAuth::PrivateKeyJwt),
            _ => None,
        }
    }
}

/// The method to register with: `none` when allowed (a native public client),
/// else post, else basic (mcp-remote's order); RFC 8414's default when the list is absent is basic.
pub fn choose_token_auth(supported: Option<&[String]>) -> TokenAuth {
    let Some(list) = supported else {
        return TokenAuth::ClientSecretBasic;
    };
    for pref in [
        TokenAuth::None,
        TokenAuth::ClientSecretPost,
        TokenAuth::ClientSecretBasic,
    ] {
        if list.iter().any(|m| m == pref.as_str()) {
            return pref;
        }
    }
    TokenAuth::ClientSecretBasic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn prm_candidates_follow_rfc_9728() {
        let mcp = u("https://a.example/api/mcp");
        let c = prm_candidates(&mcp, None).unwrap();
        assert_eq!(
            c[0].as_str(),
            "https://a.example/.well-known/oauth-protected-resource/api/mcp"
        );
        assert_eq!(
            c[1].as_str(),
            "https://a.example/.well-known/oauth-protected-resource"
        );
        let c = prm_candidates(&u("https://a.example/"), None).unwrap();
        assert_eq!(c.len(), 1);
        let c = prm_candidates(&mcp, Some("https://a.example/custom/prm.json")).unwrap();
        assert_eq!(c.len(), 1, "the header's URL only");
    }

    #[test]
    fn as_candidates_insert_then_append() {
        let c = as_metadata_candidates(&u("https://a/tenant1"));
        let c: Vec<&str> = c.iter().map(Url::as_str).collect();
        assert_eq!(
            c,
            [
                "https://a/.well-known/oauth-authorization-server/tenant1",
                "https://a/.well-known/openid-configuration/tenant1",
                "https://a/tenant1/.well-known/openid-configuration"
            ]
        );
        let c = as_metadata_candidates(&u("https://a"));
        assert_eq!(
            c[0].as_str(),
            "https://a/.well-known/oauth-authorization-server"
        );
        assert_eq!(c[1].as_str(), "https://a/.well-known/openid-configuration");
    }

    #[test]
    fn resource_checks() {
        let mcp = u("https://a.example/mcp");
        let prm = |r: &str| ProtectedResource {
            resource: Some(r.into()),
            ..Default::default()
        };
        assert!(check_resource(&prm("https://a.example/mcp"), &mcp).is_ok());
        assert!(check_resource(&prm("https://a.example"), &mcp).is_ok());
        assert!(check_resource(&prm("https://evil.example.com/mcp"), &mcp).is_err());
        assert!(check_resource(&prm("https://a.example/other"), &mcp).is_err());
        assert_eq!(
            canonical_resource(&u("HTTPS://A.example/mcp/#x")),
            "https://a.example/mcp"
        );
        assert_eq!(
            canonical_resource(&u("https://a.example/")),
            "https://a.example"
        );
    }

    #[test]
    fn metadata_checks() {
        let mut m = AuthServerMetadata {
            issuer: Some("https://a".into()),
            authorization_endpoint: "https://a/authorize".into(),
            token_endpoint: "https://a/token".into(),
            ..Default::default()
        };
        assert_eq!(
            check_as_metadata(&m, "https://a", true),
            Err(DiscoveryError::NoPkce)
        );
        m.code_challenge_methods_supported = Some(vec!["S256".into()]);
        assert!(check_as_metadata(&m, "https://a", true).is_ok());
        assert!(check_as_metadata(&m, "https://b", true).is_err());
        assert!(check_as_metadata(&m, "https://b", false).is_ok());
        assert!(check_secure("http://127.0.0.1:9/token", false).is_ok());
        assert!(check_secure("http://example.com/token", false).is_err());
        assert!(check_secure("http://example.com/token", true).is_ok());
        assert!(check_secure("javascript:alert(1)", true).is_err());
        let f = fallback_metadata(&u("https://a.example/x/mcp"));
        assert_eq!(f.token_endpoint, "https://a.example/token");
        assert_eq!(
            f.registration_endpoint.as_deref(),
            Some("https://a.example/register")
        );
    }

    #[test]
    fn token_auth_choice() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            choose_token_auth(Some(&l(&["client_secret_basic", "none"]))),
            TokenAuth::None
        );
        assert_eq!(
            choose_token_auth(Some(&l(&["client_secret_post"]))),
            TokenAuth::ClientSecretPost
        );
        assert_eq!(
            choose_token_auth(Some(&l(&["client_secret_basic"]))),
            TokenAuth::ClientSecretBasic
        );
        assert_eq!(choose_token_auth(None), TokenAuth::ClientSecretBasic);
    }
}
