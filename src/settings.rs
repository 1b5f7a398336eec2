//! From the command line to validated settings: the URL policy, headers with
//! `${VAR}` expansion, the config folder and its per-server key, time-outs.
//! Every error says what is wrong and how to fix it, and never shows a header value.

use crate::cli::{Cli, TransportStrategy};
use actors::http::header::{HeaderMap, HeaderName, HeaderValue};
use actors::http::HttpOptions;
use actors::oauth::{AuthOptions, ResourceParam};
use actors::token_store::StoredClient;
use actors::trace::{TraceSettings, DEFAULT_MAX_FILE_BYTES};
use machines::auth::flow::DeviceChoice;
use machines::cache_key::{cache_key, CacheKeyInput};
use machines::engine::HostConfig;
use machines::link::Strategy;
use machines::transport::is_loopback_host;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Everything the wiring needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's MCP endpoint.
    pub url: Url,
    /// Headers for every request, expanded.
    pub headers: HeaderMap,
    /// The HTTP client's options.
    pub http: HttpOptions,
    /// The host side's options (request time-out, ignored tools, client tag).
    pub host: HostConfig,
    /// `--protocol`.
    pub protocol: machines::engine::ProtocolMode,
    /// The cookie jar is on (not `--disable-cookies`).
    pub cookies: bool,
    /// A host's `initialize` may be answered with the server's remembered answer
    /// while a sign-in runs (the proxy; `mcp-remote-client` reports the real one).
    pub initialize_from_memory: bool,
    /// Wait for response headers.
    pub headers_timeout: Option<Duration>,
    /// Largest message either way.
    pub max_message_bytes: usize,
    /// mcp-remote's config folder (`<base>/mcp-remote-v1`).
    pub config_dir: PathBuf,
    /// The per-server key of files in the config folder.
    pub key: String,
    /// `--debug`.
    pub debug: bool,
    /// `--silent`.
    pub silent: bool,
    /// `--transport`.
    pub strategy: Strategy,
    /// Sign-in settings.
    pub auth: AuthOptions,
    /// `--clean`: forget stored credentials first.
    pub clean: bool,
    /// `--keep-alive` / `--ping-interval`.
    pub ping_interval: Option<Duration>,
    /// `--trace`, `--trace-bodies`, `-v`.
    pub trace: TraceSettings,
}

/// A command line that cannot be used as given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The server URL does not parse or is not http(s).
    #[error("invalid server URL {0:?}: {1}")]
    Url(String, String),
    /// Plain http to a remote host without `--allow-http`.
    #[error("refusing plain http:// to {0}: use https://, or pass --allow-http if you accept unencrypted traffic")]
    InsecureHttp(String),
    /// A `--header` argument is not `Name: value`.
    #[error("--header {0:?} is not in \"Name: value\" form")]
    HeaderSyntax(String),
    /// A header name or value is not valid in HTTP.
    #[error("header {0:?} has an invalid name or value")]
    HeaderInvalid(String),
    /// `${VAR}` names an unset variable.
    #[error("environment variable {var} used in {header} is not set")]
    UnsetVariable {
        /// The variable.
        var: String,
        /// The header that uses it.
        header: String,
    },
    /// A header file could not be read.
    #[error("could not read the header file {0}: {1}")]
    HeaderFile(String, String),
    /// A sign-in flag's value cannot be used.
    #[error("{flag}: {reason}")]
    AuthFlag {
        /// The flag.
        flag: &'static str,
        /// What is wrong (never a secret).
        reason: String,
    },
    /// No home folder and no `MCP_REMOTE_CONFIG_DIR`.
    #[error("cannot find the config folder: set MCP_REMOTE_CONFIG_DIR")]
    NoConfigDir,
}

/// `MCP_REMOTE_CONFIG_DIR`, else `~/.mcp-auth` (as mcp-remote 0.15).
pub fn config_base() -> Result<PathBuf, SettingsError> {
    match std::env::var_os("MCP_REMOTE_CONFIG_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(std::env::home_dir()
            .ok_or(SettingsError::NoConfigDir)?
            .join(".mcp-auth")),
    }
}

/// The folder of credential files: `<config base>/mcp-remote-v1`.
pub fn credentials_dir() -> Result<PathBuf, SettingsError> {
    Ok(config_base()?.join("mcp-remote-v1"))
}

impl Settings {
    /// The file remembering which transport this server speaks.
    pub fn transport_memory(&self) -> PathBuf {
        self.config_dir.join(format!("{}_transport.json", self.key))
    }

    /// Check a command line.
    pub fn from_cli(cli: &Cli) -> Result<Settings, SettingsError> {
        let url = Url::parse(&cli.server_url)
            .map_err(|e| SettingsError::Url(cli.server_url.clone(), e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if cli.allow_http || is_loopback_host(&url) => {}
            "http" => {
                return Err(SettingsError::InsecureHttp(
                    url.host_str().unwrap_or_default().to_owned(),
                ))
            }
            other => {
                return Err(SettingsError::Url(
                    cli.server_url.clone(),
                    format!("scheme {other}: is not http(s)"),
                ))
            }
        }
        // Raw headers in order; a later one with the same name wins (as in mcp-remote).
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        for arg in &cli.headers {
            let (name, value) =
                parse_header_line(arg).ok_or_else(|| SettingsError::HeaderSyntax(redact(arg)))?;
            raw.insert(name.to_owned(), value.to_owned());
        }
        let mut literal: BTreeMap<String, String> = BTreeMap::new();
        for file in &cli.header_files {
            let text = std::fs::read_to_string(file).map_err(|e| {
                SettingsError::HeaderFile(file.display().to_string(), e.to_string())
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match parse_header_line(line) {
                    Some((name, value)) => {
                        raw.insert(name.to_owned(), value.to_owned());
                        literal.insert(name.to_owned(), value.to_owned());
                    }
                    None => eprintln!(
                        "mcp-remote: ignoring line {} of {}, which is not in \"Name: value\" form",
                        n + 1,
                        file.display()
                    ),
                }
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &raw {
            let expanded = if literal.get(name) == Some(value) {
                value.clone()
            } else {
                expand_env(value, &format!("the {name} header"), |v| {
                    std::env::var(v).ok()
                })?
            };
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SettingsError::HeaderInvalid(name.clone()))?;
            let mut header_value = HeaderValue::from_str(&expanded)
                .map_err(|_| SettingsError::HeaderInvalid(name.clone()))?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        let base = config_base()?;
        let auth_flag =
            |flag: &'static str, reason: String| SettingsError::AuthFlag { flag, reason };
        let mut authorize_params = BTreeMap::new();
        for kv in &cli.authorize_params {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                auth_flag("--authorize-param", format!("{kv:?} is not key=value"))
            })?;
            const RESERVED: [&str; 6] = [
                "client_id",
                "redirect_uri",
                "response_type",
                "state",
                "code_challenge",
                "code_challenge_method",
            ];
            if RESERVED.contains(&k) {
                return Err(auth_flag(
                    "--authorize-param",
                    format!("{k} is set by mcp-remote itself and cannot be overridden"),
                ));
            }
            authorize_params.insert(k.to_owned(), v.to_owned());
        }
        let resource = match (&cli.resource, cli.disable_resource_parameter) {
            (_, true) => ResourceParam::Disabled,
            (Some(r), false) if r.is_empty() => ResourceParam::Disabled,
            (Some(r), false) => {
                Url::parse(r).map_err(|_| {
                    auth_flag(
                        "--resource",
                        format!(
                            "{r:?} is not an absolute URI (RFC 8707), e.g. https://example.com/mcp"
                        ),
                    )
                })?;
                ResourceParam::Fixed(r.clone())
            }
            (None, false) => ResourceParam::Auto,
        };
        if let Some(u) = &cli.client_metadata_url {
            let parsed = Url::parse(u)
                .map_err(|_| auth_flag("--client-metadata-url", "not a URL".into()))?;
            if parsed.scheme() != "https" || parsed.path().len() <= 1 {
                return Err(auth_flag(
                    "--client-metadata-url",
                    "must be an https URL with a path".into(),
                ));
            }
        }
        let static_client = match &cli.static_oauth_client_info {
            Some(raw) => {
                let text = json_arg(raw, "--static-oauth-client-info")?;
                let text = expand_env(&text, "--static-oauth-client-info", |v| {
                    std::env::var(v).ok()
                })?;
                let client: StoredClient = serde_json::from_str(&text).map_err(|_| {
                    auth_flag(
                        "--static-oauth-client-info",
                        "must be JSON with at least a client_id".into(),
                    )
                })?;
                Some(client)
            }
            None => None,
        };
        let static_metadata = match &cli.static_oauth_client_metadata {
            Some(raw) => {
                let text = json_arg(raw, "--static-oauth-client-metadata")?;
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(serde_json::Value::Object(map)) => Some(map),
                    _ => {
                        return Err(auth_flag(
                            "--static-oauth-client-metadata",
                            "must be a JSON object".into(),
                        ))
                    }
                }
            }
            None => None,
        };
        if cli.client_credentials
            && cli.client_key.is_none()
            && static_client
                .as_ref()
                .is_none_or(|c| c.client_secret.is_none())
        {
            return Err(auth_flag(
                "--client-credentials",
                "needs --static-oauth-client-info with a client_id and a client_secret".into(),
            ));
        }
        let callback_path = cli
            .callback_path
            .clone()
            .unwrap_or_else(|| "/oauth/callback".into());
        if !callback_path.starts_with('/') {
            return Err(auth_flag("--callback-path", "must start with /".into()));
        }
        let token_endpoint = match &cli.token_endpoint {
            None => None,
            Some(_) if !cli.client_credentials => {
                return Err(auth_flag(
                    "--token-endpoint",
                    "is for machine-to-machine sign-in: add --client-credentials (and --static-oauth-client-info)".into(),
                ))
            }
            Some(text) => {
                let bad = |why: &str| auth_flag("--token-endpoint", format!("{text:?} {why}"));
                let u = Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
                match u.scheme() {
                    "https" => {}
                    "http" if cli.allow_http || is_loopback_host(&u) => {}
                    "http" => return Err(bad("is plain http: use https, or add --allow-http")),
                    _ => return Err(bad("must be an https:// URL")),
                }
                Some(u)
            }
        };
        let client_key = match &cli.client_key {
            None => None,
            Some(path) => {
                let bad = |why: String| auth_flag("--client-key", why);
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                actors::jwt::check(&pem)
                    .map_err(|why| bad(format!("{}: {why}", path.display())))?;
                if static_client.is_none() {
                    return Err(bad(
                        "needs --static-oauth-client-info with the client_id it signs for".into(),
                    ));
                }
                Some(machines::auth::flow::ClientKey(pem.into()))
            }
        };
        let enterprise = enterprise(cli, static_client.is_some())?;
        let success_url = match &cli.auth_success_url {
            None => None,
            Some(text) => {
                let bad = |why: &str| auth_flag("--auth-success-url", format!("{text:?} {why}"));
                let u = Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
                match u.scheme() {
                    "https" => {}
                    "http" if cli.allow_http || is_loopback_host(&u) => {}
                    "http" => return Err(bad("is plain http: use https, or add --allow-http")),
                    _ => return Err(bad("must be an https:// URL")),
                }
                if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                    return Err(bad("must not carry a query, a fragment or credentials"));
                }
                Some(u)
            }
        };
        let key = cache_key(&CacheKeyInput {
            server_url: &cli.server_url,
            resource: match &resource {
                ResourceParam::Fixed(r) => Some(r.as_str()),
                _ => None,
            },
            authorize_params: authorize_params.clone(),
            headers: raw,
            client_metadata_url: cli.client_metadata_url.as_deref(),
            token_endpoint: cli.token_endpoint.as_deref(),
        });
        let auth = AuthOptions {
            mcp_url: url.clone(),
            allow_http: cli.allow_http,
            allow_private_network: cli.allow_private_network,
            static_client,
            static_metadata,
            client_metadata_url: cli.client_metadata_url.clone(),
            resource,
            authorize_params: authorize_params.into_iter().collect(),
            redirect_host: cli.host.clone().unwrap_or_else(|| "localhost".into()),
            callback_path,
            callback_port: cli.callback_port,
            auth_timeout: Duration::from_secs(cli.auth_timeout.unwrap_or(30).max(1)),
            client_credentials: cli.client_credentials,
            client_name: "MCP CLI Proxy".into(),
            success_url,
            use_id_token: cli.use_id_token,
            token_endpoint,
            client_key,
            enterprise,
            device: if cli.device_code {
                DeviceChoice::Always
            } else if actors::browser::usable() {
                DeviceChoice::Never
            } else {
                // No browser can show here (SSH, a container): the device grant, where offered.
                DeviceChoice::WhenOffered
            },
        };
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Ok(Settings {
            url,
            headers,
            http: HttpOptions {
                connect_timeout: Duration::from_secs(cli.connect_timeout.max(1)),
                read_timeout: seconds(cli.body_timeout),
                enable_proxy: cli.enable_proxy,
                ipv4: cli.ipv4,
                extra_ca_certs: cli
                    .extra_ca_certs
                    .clone()
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from),
            },
            cookies: !cli.disable_cookies,
            initialize_from_memory: true,
            protocol: match cli.protocol {
                crate::cli::ProtocolArg::Auto => machines::engine::ProtocolMode::Auto,
                crate::cli::ProtocolArg::Legacy => machines::engine::ProtocolMode::Legacy,
                crate::cli::ProtocolArg::Modern => machines::engine::ProtocolMode::Modern,
            },
            host: HostConfig {
                request_timeout: seconds(cli.request_timeout),
                ignore_tools: cli.ignore_tools.clone(),
                client_tag: Some(format!("via mcp-remote-rs {}", env!("CARGO_PKG_VERSION"))),
            },
            headers_timeout: seconds(cli.headers_timeout),
            max_message_bytes: cli.max_message_bytes.max(1024),
            trace: TraceSettings {
                file: cli.trace.as_ref().map(|file| match file {
                    Some(file) => file.clone(),
                    None => base
                        .join("mcp-remote-v1")
                        .join(format!("{key}_trace.jsonl")),
                }),
                bodies: cli.trace_bodies,
                verbosity: cli.verbose,
                max_file_bytes: std::env::var("MCP_REMOTE_TRACE_MAX_BYTES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_MAX_FILE_BYTES),
            },
            config_dir: base.join("mcp-remote-v1"),
            key,
            debug: cli.debug,
            silent: cli.silent,
            auth,
            clean: cli.clean,
            ping_interval: (cli.keep_alive || cli.ping_interval.is_some())
                .then(|| Duration::from_secs(cli.ping_interval.unwrap_or(30).max(1))),
            strategy: match cli.transport {
                TransportStrategy::HttpFirst => Strategy::HttpFirst,
                TransportStrategy::SseFirst => Strategy::SseFirst,
                TransportStrategy::HttpOnly => Strategy::HttpOnly,
                TransportStrategy::SseOnly => Strategy::SseOnly,
            },
        })
    }
}

/// A JSON argument given inline or as `@file`.
fn json_arg(raw: &str, flag: &'static str) -> Result<String, SettingsError> {
    match raw.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| SettingsError::AuthFlag {
            flag,
            reason: format!("cannot read {path}: {e}"),
        }),
        None => Ok(raw.to_owned()),
    }
}

/// `Name: value` with mcp-remote's rule: `^([A-Za-z0-9_-]+):\s*(.*)$`.
pub fn parse_header_line(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then(|| (name, value.trim_start()))
}

fn auth_flag(flag: &'static str, reason: String) -> SettingsError {
    SettingsError::AuthFlag { flag, reason }
}

/// `--idp-token-endpoint` and its companions: enterprise-managed authorization.
fn enterprise(
    cli: &Cli,
    has_static_client: bool,
) -> Result<Option<machines::auth::flow::Enterprise>, SettingsError> {
    use machines::auth::flow::{AssertionSource, Enterprise};
    let Some(text) = &cli.idp_token_endpoint else {
        for (given, flag) in [
            (cli.identity_assertion.is_some(), "--identity-assertion"),
            (cli.idp_client_id.is_some(), "--idp-client-id"),
            (cli.idp_client_secret.is_some(), "--idp-client-secret"),
        ] {
            if given {
                return Err(auth_flag(
                    flag,
                    "belongs to enterprise-managed authorization: add --idp-token-endpoint".into(),
                ));
            }
        }
        return Ok(None);
    };
    let bad = |why: &str| auth_flag("--idp-token-endpoint", format!("{text:?} {why}"));
    let u = Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    match u.scheme() {
        "https" => {}
        "http" if cli.allow_http || is_loopback_host(&u) => {}
        "http" => return Err(bad("is plain http: use https, or add --allow-http")),
        _ => return Err(bad("must be an https:// URL")),
    }
    if cli.client_credentials || cli.device_code {
        return Err(bad(
            "replaces the other sign-ins: drop --client-credentials and --device-code",
        ));
    }
    if !has_static_client {
        return Err(bad(
            "needs --static-oauth-client-info: the client the MCP server's authorization server knows",
        ));
    }
    let Some(raw) = &cli.identity_assertion else {
        return Err(bad(
            "needs --identity-assertion: the ID token to exchange (${VAR} or @FILE)",
        ));
    };
    let assertion = match raw.strip_prefix('@') {
        Some(path) => AssertionSource::File(PathBuf::from(path)),
        None => AssertionSource::Value(
            expand_env(raw, "--identity-assertion", |v| std::env::var(v).ok())?.into(),
        ),
    };
    if cli.idp_client_secret.is_some() && cli.idp_client_id.is_none() {
        return Err(auth_flag(
            "--idp-client-secret",
            "needs --idp-client-id".into(),
        ));
    }
    let idp_client_secret = match &cli.idp_client_secret {
        Some(s) => Some(expand_env(s, "--idp-client-secret", |v| {
            std::env::var(v).ok()
        })?),
        None => None,
    };
    Ok(Some(Enterprise {
        idp_token_endpoint: u,
        idp_client_id: cli.idp_client_id.clone(),
        idp_client_secret,
        assertion,
    }))
}

/// Replace each `${VAR}`; an unset variable is an error naming it and the header.
pub fn expand_env(
    value: &str,
    header: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SettingsError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let var = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match lookup(var) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(SettingsError::UnsetVariable {
                    var: var.to_owned(),
                    header: header.to_owned(),
                })
            }
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A header argument for an error message: the name only.
fn redact(arg: &str) -> String {
    match arg.split_once(':') {
        Some((name, _)) => format!("{name}: …"),
        None if arg.len() > 24 => "…".into(),
        None => arg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_follow_mcp_remote() {
        assert_eq!(
            parse_header_line("Authorization: Bearer x"),
            Some(("Authorization", "Bearer x"))
        );
        assert_eq!(parse_header_line("X-Key:abc"), Some(("X-Key", "abc")));
        assert_eq!(parse_header_line("Bad Name: x"), None);
        assert_eq!(parse_header_line("novalue"), None);
    }

    #[test]
    fn expansion_names_the_unset_variable() {
        let env = |v: &str| (v == "SET").then(|| "s3cret".to_owned());
        assert_eq!(
            expand_env("Bearer ${SET}!", "Authorization", env).unwrap(),
            "Bearer s3cret!"
        );
        let err = expand_env("Bearer ${MISSING}", "Authorization", env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MISSING") && err.contains("Authorization"),
            "{err}"
        );
        assert!(!err.contains("s3cret"));
        assert_eq!(expand_env("no vars ${", "X", env).unwrap(), "no vars ${");
    }
}
