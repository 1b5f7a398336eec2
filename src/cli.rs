//! The command line, compatible with mcp-remote 0.15: `mcp-remote <server-url>
//! [callback-port] [flags]`. Every flag of mcp-remote is accepted and works.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  mcp-remote https://remote.example.com/mcp
  mcp-remote https://remote.example.com/mcp --header \"Authorization: Bearer ${API_TOKEN}\"
  mcp-remote http://127.0.0.1:8080/mcp --ignore-tool 'delete*' --debug

In an MCP client's config (Claude Desktop, Cursor, Windsurf):
  { \"mcpServers\": { \"remote\": { \"command\": \"mcp-remote\",
      \"args\": [\"https://remote.example.com/mcp\"] } } }

stdout carries only JSON-RPC; logs go to stderr (and, with --debug, to
<config dir>/<key>_debug.log). Config dir: $MCP_REMOTE_CONFIG_DIR or ~/.mcp-auth,
inside it mcp-remote-v1/.

Something wrong? `mcp-remote-client <url> --doctor` checks each step from DNS to
tools/list and says what to fix; `--trace` writes a timeline to attach to a bug report.";

/// `mcp-remote`: bridge a stdio MCP client to a remote MCP server.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "mcp-remote",
    version,
    about = "Bridge a stdio MCP client (Claude Desktop, Cursor, Windsurf…) to a remote MCP server over Streamable HTTP.",
    long_about = "Bridge a stdio MCP client (Claude Desktop, Cursor, Windsurf…) to a remote MCP server over \
Streamable HTTP. It reads JSON-RPC messages on stdin, one per line, sends each to the server, and \
writes the server's messages to stdout. A drop-in replacement for the Node package mcp-remote: same \
arguments, same environment variables, same config folder.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// URL of the remote MCP server. Must be https://, except for loopback hosts
    /// (localhost, 127.0.0.1, [::1]) or with --allow-http.
    #[arg(value_name = "SERVER_URL", index = 1)]
    pub server_url: String,

    /// Port of the local OAuth callback listener (used by sign-in).
    #[arg(value_name = "CALLBACK_PORT", index = 2)]
    pub callback_port: Option<u16>,

    /// Add a header to every request to the server, as "Name: value". Repeatable.
    /// ${VAR} in the value is replaced by the environment variable VAR (an unset
    /// variable is an error). Values are never logged.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Read headers from a file: one "Name: value" per line, # starts a comment.
    /// Values are taken literally.
    #[arg(long = "header-file", value_name = "FILE")]
    pub header_files: Vec<PathBuf>,

    /// Allow plain http:// to a host that is not loopback (traffic and tokens unencrypted).
    #[arg(long)]
    pub allow_http: bool,

    /// Let sign-in follow URLs that point at private, link-local or cloud-metadata
    /// addresses (10.0.0.0/8, 169.254.169.254, …) when the MCP server itself is public.
    /// Without it, such a URL from the server or its authorization server is refused.
    #[arg(long)]
    pub allow_private_network: bool,

    /// Verbose logs on stderr, also written to <config dir>/<key>_debug.log.
    #[arg(long)]
    pub debug: bool,

    /// Only errors on stderr (--debug still logs to its file).
    #[arg(long)]
    pub silent: bool,

    /// Write a timeline of what the proxy does, one JSON object per line: every
    /// machine step, HTTP exchange (URL redacted, header names only), message
    /// (method, id, size, time to answer), reconnect, refresh and sign-in step.
    /// No secret is ever written. Without FILE: <config dir>/<key>_trace.jsonl.
    /// Appended to; past 32 MiB it moves to FILE.1. Give the server URL first
    /// (`mcp-remote URL --trace`), or use --trace=FILE.
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        env = "MCP_REMOTE_TRACE",
        help_heading = "Diagnostics"
    )]
    pub trace: Option<Option<PathBuf>>,

    /// With --trace: also write each message's body, with every value under a
    /// secret-looking name (token, key, password, secret, code…) redacted.
    #[arg(long, help_heading = "Diagnostics")]
    pub trace_bodies: bool,

    /// Show the trace's steps on stderr as they happen: -v machine steps, HTTP
    /// exchanges and sign-in steps; -vv also streams and timers.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, help_heading = "Diagnostics")]
    pub verbose: u8,

    /// How to reach the server: http-first (Streamable HTTP, falling back to the
    /// legacy HTTP+SSE transport when the server answers 400/404/405), sse-first
    /// (the reverse), http-only or sse-only. What a server turned out to speak is
    /// remembered in the config folder and tried first next time.
    #[arg(long, value_enum, default_value_t = TransportStrategy::HttpFirst, value_name = "STRATEGY")]
    pub transport: TransportStrategy,

    /// Hide tools whose name matches this pattern (* wildcard, case-insensitive):
    /// removed from tools/list, and tools/call is refused. Repeatable.
    #[arg(long = "ignore-tool", value_name = "PATTERN")]
    pub ignore_tools: Vec<String>,

    /// Seconds allowed to open a connection to the server.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub connect_timeout: u64,

    /// Seconds to wait for the server's response headers (0: no limit).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub headers_timeout: u64,

    /// Seconds of silence allowed while reading a response body or stream (0: no limit).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub body_timeout: u64,

    /// Seconds a request from the client may wait for the server's answer; then
    /// the client gets an error and the server a notifications/cancelled (0: no limit).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub request_timeout: u64,

    /// Largest message accepted from either side, in bytes; a longer stdin line is
    /// answered with an error and skipped.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Use HTTP_PROXY / HTTPS_PROXY / NO_PROXY from the environment.
    #[arg(long)]
    pub enable_proxy: bool,

    /// Connect over IPv4 only.
    #[arg(long)]
    pub ipv4: bool,

    /// Extra CA certificates (PEM bundle) to trust besides the system store
    /// (an empty value counts as unset, as in Node).
    #[arg(
        long,
        env = "NODE_EXTRA_CA_CERTS",
        value_name = "PEM_FILE",
        value_parser = clap::builder::ValueParser::os_string()
    )]
    pub extra_ca_certs: Option<std::ffi::OsString>,

    /// Protocol era. auto (default): ask the server with server/discover whether it
    /// speaks MCP 2026-07-28 and bridge the host's older revision to it, else
    /// initialize as before; the answer is remembered with the transport. legacy:
    /// never ask (MCP 2025-11-25 and older only). modern: 2026-07-28 only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ProtocolArg::Auto)]
    pub protocol: ProtocolArg,

    /// Send a keep-alive ping every 30 s (or --ping-interval): keeps idle
    /// connections from being reaped, and an unanswered ping declares the
    /// connection dead (pending requests get an error, the link reconnects).
    #[arg(long)]
    pub keep_alive: bool,

    /// Seconds between keep-alive pings (implies --keep-alive).
    #[arg(long, value_name = "SECONDS")]
    pub ping_interval: Option<u64>,

    /// Turn off the cookie jar: without it, cookies the server sets (load balancer
    /// stickiness) are kept in memory for its own origin and sent back to it.
    #[arg(long)]
    pub disable_cookies: bool,

    /// Host name in the OAuth redirect URI (default localhost). The callback
    /// listener always binds 127.0.0.1 only.
    #[arg(long, value_name = "HOST", help_heading = "Sign-in (OAuth)")]
    pub host: Option<String>,

    /// Path of the OAuth callback on the loopback listener (default /oauth/callback).
    #[arg(long, value_name = "PATH", help_heading = "Sign-in (OAuth)")]
    pub callback_path: Option<String>,

    /// Seconds a browser sign-in may take in all, from opening the browser to the
    /// token (default 30); the client's waiting request then gets an error.
    #[arg(long, value_name = "SECONDS", help_heading = "Sign-in (OAuth)")]
    pub auth_timeout: Option<u64>,

    /// Where the browser goes after a successful sign-in (a 303 from the callback
    /// page; nothing is appended). https, or http to loopback or with --allow-http.
    #[arg(long, value_name = "URL", help_heading = "Sign-in (OAuth)")]
    pub auth_success_url: Option<String>,

    /// Client metadata merged into dynamic registration, as JSON or @file (its
    /// "scope" wins over every other scope source).
    #[arg(long, value_name = "JSON", help_heading = "Sign-in (OAuth)")]
    pub static_oauth_client_metadata: Option<String>,

    /// A pre-registered client, as JSON or @file: {"client_id": …, "client_secret": …}.
    /// ${VAR} is expanded from the environment. Skips registration; pins the callback port.
    #[arg(long, value_name = "JSON", help_heading = "Sign-in (OAuth)")]
    pub static_oauth_client_info: Option<String>,

    /// An https URL of a client ID metadata document, used as client_id when the
    /// authorization server supports it. Pins the callback port.
    #[arg(long, value_name = "URL", help_heading = "Sign-in (OAuth)")]
    pub client_metadata_url: Option<String>,

    /// RFC 8707 resource indicator sent on authorization, token and refresh
    /// requests (default: the server's protected resource metadata, or its URL).
    #[arg(long, value_name = "URI", help_heading = "Sign-in (OAuth)")]
    pub resource: Option<String>,

    /// Never send the resource parameter (for authorization servers that reject it).
    #[arg(long, help_heading = "Sign-in (OAuth)")]
    pub disable_resource_parameter: bool,

    /// Extra parameter for the authorization URL, key=value (repeatable), e.g.
    /// audience=…, prompt=consent.
    #[arg(
        long = "authorize-param",
        value_name = "KEY=VALUE",
        help_heading = "Sign-in (OAuth)"
    )]
    pub authorize_params: Vec<String>,

    /// Send the OIDC id_token as the bearer token instead of the access token (for
    /// servers that accept ID tokens); it is refreshed before its "exp".
    #[arg(long, help_heading = "Sign-in (OAuth)")]
    pub use_id_token: bool,

    /// Sign in with the device authorization grant (RFC 8628): a code to enter at a
    /// URL on any device, for machines where no browser can reach localhost. Used
    /// without this flag too when no browser can be shown here (SSH, no display)
    /// and the authorization server offers it.
    #[arg(long, help_heading = "Sign-in (OAuth)")]
    pub device_code: bool,

    /// Machine-to-machine: get tokens with the client credentials grant, using
    /// --static-oauth-client-info. No browser.
    #[arg(long, help_heading = "Sign-in (OAuth)")]
    pub client_credentials: bool,

    /// The client authenticates with a JWT signed by this private key (PKCS#8 PEM
    /// file, EC P-256 or RSA) instead of a secret: private_key_jwt (RFC 7523). The
    /// client_id comes from --static-oauth-client-info.
    #[arg(long, value_name = "PEM_FILE", help_heading = "Sign-in (OAuth)")]
    pub client_key: Option<std::path::PathBuf>,

    /// With --client-credentials: the authorization server's token endpoint, so no
    /// discovery is needed (https, or http to loopback or with --allow-http).
    #[arg(long, value_name = "URL", help_heading = "Sign-in (OAuth)")]
    pub token_endpoint: Option<String>,

    /// Enterprise-managed authorization: the company identity provider's token
    /// endpoint, where the --identity-assertion is exchanged (RFC 8693) for an ID-JAG
    /// that the MCP server's authorization server redeems for tokens with the
    /// --static-oauth-client-info client. No browser.
    #[arg(long, value_name = "URL", help_heading = "Sign-in (OAuth)")]
    pub idp_token_endpoint: Option<String>,

    /// With --idp-token-endpoint: the user's identity assertion (an OIDC ID token
    /// from the identity provider), as the token itself, ${VAR} (from the
    /// environment: keeps it out of the process list), or @FILE (read again at every
    /// sign-in, for tooling that keeps it fresh).
    #[arg(long, value_name = "TOKEN", help_heading = "Sign-in (OAuth)")]
    pub identity_assertion: Option<String>,

    /// With --idp-token-endpoint: the client id the exchange is made as at the
    /// identity provider.
    #[arg(long, value_name = "ID", help_heading = "Sign-in (OAuth)")]
    pub idp_client_id: Option<String>,

    /// With --idp-client-id: its secret at the identity provider (${VAR} is expanded).
    #[arg(long, value_name = "SECRET", help_heading = "Sign-in (OAuth)")]
    pub idp_client_secret: Option<String>,

    /// Forget this server's stored tokens, client registration and remembered
    /// initialize answer, then sign in anew.
    #[arg(long, help_heading = "Sign-in (OAuth)")]
    pub clean: bool,
}

/// `--protocol`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolArg {
    /// Probe for MCP 2026-07-28, fall back to initialize.
    Auto,
    /// MCP 2025-11-25 and older only.
    Legacy,
    /// MCP 2026-07-28 only.
    Modern,
}

/// `--transport`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportStrategy {
    /// Streamable HTTP, falling back to legacy SSE.
    HttpFirst,
    /// Legacy SSE, falling back to Streamable HTTP.
    SseFirst,
    /// Streamable HTTP only.
    HttpOnly,
    /// Legacy SSE only.
    SseOnly,
}
