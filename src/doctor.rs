//! `mcp-remote-client --doctor`: walk the path to the server one step at a time —
//! the URL and flags, DNS, TCP (IPv6 and IPv4), the proxy, TLS, the transport, the
//! stored credentials — and say of each whether it passed and, when it did not,
//! why and what to do. The steps that need the whole proxy (discovery,
//! registration, sign-in, `initialize`, `tools/list`) are read from the trace of a
//! real connection (the tap on [`actors::trace`]).
//!
//! Each check is read-only: nothing is registered, stored or forgotten here.

use crate::settings::Settings;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong.
    Passed,
    /// This is what stops the connection.
    Failed,
    /// Works, with something worth knowing.
    Warning,
    /// Not applicable (no TLS on http://, no credentials on an open server).
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone)]
pub struct Check {
    /// `url`, `dns`, `tcp`, `proxy`, `tls`, `transport`, `credentials`, …
    pub step: &'static str,
    /// How it went.
    pub outcome: Outcome,
    /// What was seen (never a secret).
    pub detail: String,
    /// What to do, when something is wrong.
    pub fix: Option<String>,
}

impl Check {
    fn new(step: &'static str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Check {
            step,
            outcome,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A failed step with its fix.
    pub fn failed(step: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check::new(step, Outcome::Failed, detail).fix(fix)
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// The check as `--json` prints it.
    pub fn to_json(&self) -> Value {
        json!({
            "step": self.step,
            "outcome": match self.outcome {
                Outcome::Passed => "passed",
                Outcome::Failed => "failed",
                Outcome::Warning => "warning",
                Outcome::Skipped => "skipped",
            },
            "detail": self.detail,
            "fix": self.fix,
        })
    }

    /// The check as a line (and its fix) for a human.
    pub fn render(&self) -> String {
        let mark = match self.outcome {
            Outcome::Passed => "ok  ",
            Outcome::Failed => "FAIL",
            Outcome::Warning => "warn",
            Outcome::Skipped => "skip",
        };
        match &self.fix {
            Some(fix) => format!(
                "[{mark}] {:<12} {}\n       fix: {fix}",
                self.step, self.detail
            ),
            None => format!("[{mark}] {:<12} {}", self.step, self.detail),
        }
    }
}

/// The network steps, in order; a failed step ends the walk (the next ones could
/// only fail for the same reason).
pub async fn network_steps(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![url_step(settings)];
    let url = &settings.url;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = match dns_step(&host, port, settings.http.ipv4).await {
        Ok((check, addrs)) => {
            checks.push(check);
            addrs
        }
        Err(check) => {
            checks.push(check);
            return checks;
        }
    };
    let tcp = tcp_step(&host, port, &addrs, settings.http.connect_timeout).await;
    let failed = tcp.outcome == Outcome::Failed && !settings.http.enable_proxy;
    checks.push(tcp);
    checks.push(proxy_step(settings));
    if failed {
        return checks;
    }
    let http = match actors::http::build_diagnostic_client(&settings.http) {
        Ok(http) => http,
        Err(e) => {
            checks.push(
                Check::new("tls", Outcome::Failed, e.to_string())
                    .fix("check the file given to --extra-ca-certs / NODE_EXTRA_CA_CERTS"),
            );
            return checks;
        }
    };
    let transport = transport_step(settings, &http).await;
    let tls_failed = transport
        .0
        .as_ref()
        .is_some_and(|c| c.outcome == Outcome::Failed);
    if let Some(tls) = transport.0 {
        checks.push(tls);
    }
    if tls_failed {
        return checks;
    }
    checks.push(transport.1);
    checks.push(credentials_step(settings));
    checks
}

fn url_step(settings: &Settings) -> Check {
    let url = &settings.url;
    let mut detail = format!(
        "{} ({}; config folder {}, key {})",
        machines::trace::redact_url(url),
        if url.scheme() == "https" {
            "https"
        } else {
            "plain http"
        },
        settings.config_dir.display(),
        settings.key
    );
    if !settings.headers.is_empty() {
        let names: Vec<&str> = settings.headers.keys().map(|k| k.as_str()).collect();
        detail.push_str(&format!("; headers: {}", names.join(", ")));
    }
    Check::new("url", Outcome::Passed, detail)
}

async fn dns_step(
    host: &str,
    port: u16,
    ipv4_only: bool,
) -> Result<(Check, Vec<SocketAddr>), Check> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        let addr = SocketAddr::new(ip, port);
        return Ok((
            Check::new("dns", Outcome::Skipped, format!("{ip} is an address")),
            vec![addr],
        ));
    }
    let started = Instant::now();
    let looked = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((bare, port)),
    )
    .await;
    match looked {
        Ok(Ok(found)) => {
            let mut addrs: Vec<SocketAddr> = found.collect();
            if ipv4_only {
                addrs.retain(SocketAddr::is_ipv4);
            }
            if addrs.is_empty() {
                return Err(Check::new(
                    "dns",
                    Outcome::Failed,
                    format!(
                        "{bare} has no {}address",
                        if ipv4_only { "IPv4 " } else { "" }
                    ),
                )
                .fix("check the host name; with --ipv4, the server must have an IPv4 address"));
            }
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            Ok((
                Check::new(
                    "dns",
                    Outcome::Passed,
                    format!(
                        "{bare} → {} in {:.1} ms",
                        list.join(", "),
                        started.elapsed().as_secs_f64() * 1e3
                    ),
                ),
                addrs,
            ))
        }
        Ok(Err(e)) => Err(Check::new(
            "dns",
            Outcome::Failed,
            format!("cannot resolve {bare}: {e}"),
        )
        .fix("check the spelling of the host; some names resolve only while a VPN is connected")),
        Err(_) => Err(Check::new(
            "dns",
            Outcome::Failed,
            format!("resolving {bare} took over 10 s"),
        )
        .fix("the DNS server does not answer: check the network or the VPN")),
    }
}

fn proxy_step(settings: &Settings) -> Check {
    let set: Vec<(String, String)> = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ]
    .iter()
    .filter_map(|name| {
        let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
        let shown = url::Url::parse(&value)
            .map(|u| machines::trace::redact_url(&u))
            .unwrap_or(value);
        Some(((*name).to_owned(), shown))
    })
    .collect();
    let listed = set
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match (settings.http.enable_proxy, set.is_empty()) {
        (true, true) => Check::new(
            "proxy",
            Outcome::Warning,
            "--enable-proxy is given but no proxy variable is set",
        )
        .fix("set HTTPS_PROXY (and NO_PROXY) in the client config's env, or drop --enable-proxy"),
        (true, false) => Check::new(
            "proxy",
            Outcome::Passed,
            format!("through the proxy: {listed}"),
        ),
        (false, true) => Check::new("proxy", Outcome::Passed, "direct (no proxy)"),
        (false, false) => Check::new(
            "proxy",
            Outcome::Warning,
            format!("direct; these are set but not used without --enable-proxy: {listed}"),
        )
        .fix("if this network only reaches the internet through that proxy, add --enable-proxy"),
    }
}

async fn tcp_step(host: &str, port: u16, addrs: &[SocketAddr], limit: Duration) -> Check {
    let mut seen = Vec::new();
    let mut ok_v4 = false;
    let mut ok_v6 = false;
    let mut refused = false;
    for addr in addrs.iter().take(6) {
        let started = Instant::now();
        let family = if addr.is_ipv6() { "IPv6" } else { "IPv4" };
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                if addr.is_ipv6() {
                    ok_v6 = true;
                } else {
                    ok_v4 = true;
                }
                seen.push(format!(
                    "{family} {addr} connected in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                ));
            }
            Ok(Err(e)) => {
                refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                seen.push(format!("{family} {addr}: {e}"));
            }
            Err(_) => seen.push(format!(
                "{family} {addr}: no answer in {} s",
                limit.as_secs()
            )),
        }
    }
    let detail = seen.join("; ");
    let has_v6 = addrs.iter().any(SocketAddr::is_ipv6);
    if ok_v4 || ok_v6 {
        if has_v6 && !ok_v6 && ok_v4 {
            return Check::new("tcp", Outcome::Warning, detail)
                .fix("IPv6 does not get through here; --ipv4 saves the wait for it");
        }
        return Check::new("tcp", Outcome::Passed, detail);
    }
    let fix = if refused {
        format!(
            "nothing accepts connections on {host}:{port}: is the server running, on this port?"
        )
    } else {
        "the packets are dropped: a firewall or a disconnected VPN; behind a corporate proxy, set HTTPS_PROXY and add --enable-proxy".to_owned()
    };
    Check::new("tcp", Outcome::Failed, detail).fix(fix)
}

/// TLS (https only) and the transport, from one `initialize` POST and, when it is
/// refused, one GET for the legacy transport.
async fn transport_step(settings: &Settings, http: &reqwest::Client) -> (Option<Check>, Check) {
    let url = settings.url.clone();
    let https = url.scheme() == "https";
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "mcp-remote-client --doctor", "version": env!("CARGO_PKG_VERSION")}}});
    let sent = http
        .post(url.clone())
        .headers(settings.headers.clone())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize.to_string())
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let text = actors::http::describe_error(e);
            let lower = text.to_ascii_lowercase();
            if https
                && (lower.contains("certificate")
                    || lower.contains("tls")
                    || lower.contains("handshake"))
            {
                let fix = if lower.contains("expired") {
                    "the server's certificate has expired: its operator must renew it"
                } else if lower.contains("notvalidforname") || lower.contains("not valid for") {
                    "the certificate is for another name: check the host in the URL"
                } else {
                    "a VPN or corporate proxy that inspects TLS uses its own CA: point NODE_EXTRA_CA_CERTS (or --extra-ca-certs) at that CA's PEM file"
                };
                return (
                    Some(Check::new("tls", Outcome::Failed, text).fix(fix)),
                    Check::new("transport", Outcome::Skipped, "no TLS connection"),
                );
            }
            return (
                https.then(|| Check::new("tls", Outcome::Skipped, "no connection to check")),
                Check::new("transport", Outcome::Failed, text)
                    .fix("the server did not answer an HTTP request; check the URL, the proxy and the network"),
            );
        }
    };
    let tls = https.then(|| {
        let verified = match &settings.http.extra_ca_certs {
            Some(file) => format!("verified against the system store and {}", file.display()),
            None => "verified against the system store".to_owned(),
        };
        let summary = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(crate::x509::summarize)
            .unwrap_or_default();
        tls_check(&summary, &verified, SystemTime::now())
    });
    let remembered = actors::store::read_transport(Some(&settings.transport_memory()));
    let memory = match remembered {
        Some(t) => format!("; remembered: {t:?}"),
        None => String::new(),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // End the doctor's session politely.
    if let Some(session) = response.headers().get("mcp-session-id").cloned() {
        let _ = http
            .delete(url.clone())
            .header("mcp-session-id", session)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
    }
    match status {
        200..=299 => (
            tls,
            Check::new(
                "transport",
                Outcome::Passed,
                format!("Streamable HTTP (initialize answered {status}, {content_type}){memory}"),
            ),
        ),
        401 | 403 => (
            tls,
            Check::new(
                "transport",
                Outcome::Passed,
                format!("Streamable HTTP; the server wants credentials (HTTP {status}){memory}"),
            ),
        ),
        410 => (tls, gone(&response, "POST")),
        400 | 404 | 405 => {
            // MCP 2026-07-28 servers have no initialize: their refusal says so.
            let body: Option<Value> = response
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let probe =
                machines::modern::classify_probe(body.as_ref(), machines::modern::MODERN_VERSION);
            if !matches!(probe, machines::modern::Probe::Legacy) {
                return (
                    tls,
                    Check::new(
                        "transport",
                        Outcome::Passed,
                        format!(
                            "Streamable HTTP, MCP 2026-07-28 (initialize answered {status} with a 2026-07-28 error): the proxy talks to it with server/discover and bridges your client's older revision{memory}"
                        ),
                    ),
                );
            }
            let legacy = http
                .get(url.clone())
                .headers(settings.headers.clone())
                .header("accept", "text/event-stream")
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match legacy {
                Ok(r) if r.status().is_success()
                    && r.headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|c| c.starts_with("text/event-stream")) =>
                {
                    (tls, Check::new(
                        "transport",
                        Outcome::Passed,
                        format!("legacy HTTP+SSE (initialize POST answered {status}; the GET opened an event stream){memory}"),
                    ))
                }
                Ok(r) if r.status().as_u16() == 410 => (tls, gone(&r, "GET")),
                Ok(r) if matches!(r.status().as_u16(), 401 | 403) => (tls, Check::new(
                    "transport",
                    Outcome::Passed,
                    format!("legacy HTTP+SSE; the server wants credentials (HTTP {}){memory}", r.status().as_u16()),
                )),
                Ok(r) => (tls, Check::new(
                    "transport",
                    Outcome::Failed,
                    format!("no MCP endpoint here: POST answered {status}, GET answered {}", r.status().as_u16()),
                )
                .fix("check the URL's path: servers usually serve /mcp (Streamable HTTP) or /sse (legacy)")),
                Err(e) => (tls, Check::new(
                    "transport",
                    Outcome::Failed,
                    format!("POST answered {status}; the legacy GET failed: {}", actors::http::describe_error(e)),
                )
                .fix("check the URL's path: servers usually serve /mcp (Streamable HTTP) or /sse (legacy)")),
            }
        }
        _ => (
            tls,
            Check::new(
                "transport",
                Outcome::Failed,
                format!("initialize answered HTTP {status}"),
            )
            .fix("the server is failing or overloaded; try again later, or tell its operator"),
        ),
    }
}

/// A `410 Gone`: the server moved; its `Link` header may say where.
/// How many days before expiry a certificate is worth a warning.
const EXPIRY_WARNING_DAYS: u64 = 14;

/// The TLS step after a verified handshake: who the certificate is for, who
/// issued it, when it expires (a warning close to the end).
fn tls_check(cert: &crate::x509::CertSummary, verified: &str, now: SystemTime) -> Check {
    let mut parts = Vec::new();
    let names: Vec<&str> = cert.names.iter().map(String::as_str).take(4).collect();
    match (names.is_empty(), &cert.subject) {
        (false, _) => parts.push(format!(
            "certificate for {}{}",
            names.join(", "),
            if cert.names.len() > 4 {
                format!(" and {} more", cert.names.len() - 4)
            } else {
                String::new()
            }
        )),
        (true, Some(subject)) => parts.push(format!("certificate for {subject}")),
        (true, None) => parts.push("certificate".to_owned()),
    }
    if let Some(issuer) = &cert.issuer {
        parts.push(format!("issued by {issuer}"));
    }
    let mut days_left = None;
    if let Some(end) = cert.not_after {
        let days = end
            .duration_since(now)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0);
        days_left = Some(days);
        parts.push(format!(
            "valid until {} ({days} days)",
            &actors::trace::rfc3339(end)[..10]
        ));
    }
    let detail = format!("{}; {verified}", parts.join(", "));
    match days_left {
        Some(days) if days < EXPIRY_WARNING_DAYS => Check::new("tls", Outcome::Warning, detail)
            .fix(format!(
                "the certificate expires in {days} days: its operator should renew it soon"
            )),
        _ => Check::new("tls", Outcome::Passed, detail),
    }
}

fn gone(response: &reqwest::Response, method: &str) -> Check {
    let link = response
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .map(|l| {
            l.trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_owned()
        });
    let detail = format!("the {method} was answered 410 Gone: this endpoint is retired");
    match link {
        Some(to) if !to.is_empty() => Check::new(
            "transport",
            Outcome::Failed,
            format!("{detail}; it names {to}"),
        )
        .fix(format!("use {to} in the client config")),
        _ => Check::new("transport", Outcome::Failed, detail)
            .fix("ask the server's operator for the new URL"),
    }
}

fn credentials_step(settings: &Settings) -> Check {
    let store =
        actors::token_store::TokenStore::new(settings.config_dir.clone(), settings.key.clone());
    let client = store.load_client();
    let Some(tokens) = store.load_tokens() else {
        let detail = match &client {
            Some(_) => "no stored tokens; a client registration is stored",
            None => "none stored",
        };
        return Check::new("credentials", Outcome::Skipped, detail);
    };
    let now = actors::token_store::now_ms();
    let issuer = tokens
        .issuer
        .clone()
        .unwrap_or_else(|| "an unknown issuer".into());
    let refresh = tokens.refresh_token.is_some();
    match tokens.expires_at {
        Some(at) if at <= now && !refresh => Check::new(
            "credentials",
            Outcome::Warning,
            format!(
                "the access token from {issuer} expired {} s ago and there is no refresh token",
                (now - at) / 1000
            ),
        )
        .fix("a browser sign-in will be needed"),
        Some(at) if at <= now => Check::new(
            "credentials",
            Outcome::Passed,
            format!(
                "the access token from {issuer} expired {} s ago; a refresh token is stored",
                (now - at) / 1000
            ),
        ),
        Some(at) => Check::new(
            "credentials",
            Outcome::Passed,
            format!(
                "an access token from {issuer}, valid for {} s more{}",
                (at - now) / 1000,
                if refresh { ", and a refresh token" } else { "" }
            ),
        ),
        None => Check::new(
            "credentials",
            Outcome::Passed,
            format!(
                "an access token from {issuer} without an expiry{}",
                if refresh { ", and a refresh token" } else { "" }
            ),
        ),
    }
}

/// What to do when a server publishes no OAuth metadata.
const NO_METADATA_FIX: &str = "the server publishes no OAuth metadata (RFC 9728 protected resource metadata, RFC 8414 authorization server metadata): check the URL's path, or ask its operator to publish them; current MCP clients need them";

/// The steps of the real connection, from the trace's sign-in records and the
/// probe's document (`server`, `tools`, or `error`).
pub fn connection_steps(records: &[Value], doc: &Value) -> Vec<Check> {
    let mut checks = Vec::new();
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
    // A refresh of the stored tokens: what the grant machine decided.
    let grant = |event: &str| {
        records
            .iter()
            .find(|r| r["machine"] == "grant" && r["kind"] == "step" && r["event"] == event)
    };
    let browser = records
        .iter()
        .any(|r| r["kind"] == "effect" && r["effect"] == "AwaitCallback");
    if grant("Refreshed").is_some() {
        checks.push(Check::new(
            "refresh",
            Outcome::Passed,
            "the stored refresh token was exchanged for a new access token",
        ));
    } else if grant("RefreshRejected").is_some() {
        checks.push(
            Check::new(
                "refresh",
                Outcome::Warning,
                "the authorization server refused the stored refresh token (revoked, expired or already used), so it was forgotten and a browser sign-in followed",
            )
            .fix("nothing to do when the sign-in step passed; if this happens often, the server's refresh tokens are short-lived or revoked when another client signs in"),
        );
    } else if let Some(failed) = grant("RefreshFailed") {
        checks.push(
            Check::new(
                "refresh",
                Outcome::Warning,
                format!(
                    "the refresh did not get an answer ({}); the tokens were kept and it is retried",
                    text(failed, "detail")
                ),
            )
            .fix("check that the authorization server is reachable from this machine"),
        );
    }
    let refreshed_only = checks.first().is_some_and(|c| c.outcome == Outcome::Passed) && !browser;
    let signed_in = records
        .iter()
        .any(|r| r["kind"] == "effect" && r["effect"] == "Finished");
    if signed_in || !records.iter().all(|r| r["machine"] != "sign_in") {
        // Discovery: the metadata fetched and what came back.
        let tried: Vec<String> = records
            .iter()
            .filter(|r| r["kind"] == "step" && r["event"] == "MetadataFetched")
            .zip(
                records
                    .iter()
                    .filter(|r| r["kind"] == "effect" && r["effect"] == "FetchMetadata"),
            )
            .map(|(answer, asked)| format!("{}: {}", text(asked, "detail"), text(answer, "detail")))
            .collect();
        if !tried.is_empty() {
            let found = records.iter().any(|r| {
                r["kind"] == "step"
                    && r["event"] == "MetadataFetched"
                    && r["to"] != "done"
                    && text(r, "detail").starts_with("a document")
            });
            checks.push(if found {
                Check::new("discovery", Outcome::Passed, tried.join("; "))
            } else {
                Check::new(
                    "discovery",
                    Outcome::Warning,
                    format!(
                        "{}; so the MCP 2025-03-26 default endpoints at the server's origin were used (/authorize, /token, /register)",
                        tried.join("; ")
                    ),
                )
                .fix(NO_METADATA_FIX)
            });
        }
        if let Some(registered) = records
            .iter()
            .find(|r| r["kind"] == "step" && r["event"] == "Registered")
        {
            let ok = text(registered, "detail").starts_with("HTTP 20");
            let mut check = Check::new(
                "registration",
                if ok { Outcome::Passed } else { Outcome::Failed },
                format!("dynamic registration: {}", text(registered, "detail")),
            );
            if !ok {
                check = check.fix("the authorization server refused to register this client: use a pre-registered client (--static-oauth-client-info) or ask its operator to allow dynamic registration");
            }
            checks.push(check);
        }
        if let Some(finished) = records
            .iter()
            .rev()
            .find(|r| r["kind"] == "effect" && r["effect"] == "Finished")
        {
            let detail = text(finished, "detail");
            if detail == "tokens ready" {
                if !refreshed_only {
                    checks.push(Check::new(
                        "sign-in",
                        Outcome::Passed,
                        if browser {
                            "signed in through the browser; tokens obtained and stored"
                        } else {
                            "tokens obtained without a browser"
                        },
                    ));
                }
            } else {
                let lower = detail.to_ascii_lowercase();
                let registered = checks.iter().any(|c| c.step == "registration");
                let check = if lower.contains("regist") && !registered {
                    Check::new("registration", Outcome::Failed, detail).fix(
                        "this authorization server does not let clients register themselves: use a pre-registered client (--static-oauth-client-info) or a client metadata document (--client-metadata-url)",
                    )
                } else if lower.contains("metadata") || lower.contains("discover") {
                    Check::new("discovery", Outcome::Failed, detail).fix(
                        "the server does not say where to sign in: check the URL, or ask its operator for its OAuth metadata (RFC 9728)",
                    )
                } else {
                    Check::new("sign-in", Outcome::Failed, detail).fix(
                        "sign in again in the browser; if it keeps failing run `mcp-remote-client <url> --clean`; with --trace FILE the file shows every step",
                    )
                };
                // Nothing was discovered and the guessed endpoints failed: the
                // missing metadata is the cause.
                if let Some(discovery) = checks
                    .iter_mut()
                    .find(|c| c.step == "discovery" && c.outcome == Outcome::Warning)
                {
                    discovery.outcome = Outcome::Failed;
                }
                let step = check.step;
                if checks
                    .last()
                    .is_some_and(|c| c.step == step && c.outcome == Outcome::Passed)
                {
                    checks.pop();
                }
                checks.push(check);
                checks.push(Check::new(
                    "initialize",
                    Outcome::Skipped,
                    format!("not reached: the {step} step failed"),
                ));
                return checks;
            }
        }
    }
    match doc.get("server") {
        Some(server) => checks.push(Check::new(
            "initialize",
            Outcome::Passed,
            format!(
                "{} {} speaks protocol {}",
                server["name"].as_str().unwrap_or("?"),
                server["version"].as_str().unwrap_or("?"),
                server["protocolVersion"].as_str().unwrap_or("?")
            ),
        )),
        None => {
            let why = doc["error"]["message"]
                .as_str()
                .unwrap_or("no answer")
                .to_owned();
            checks.push(Check::new("initialize", Outcome::Failed, why).fix(
                "the earlier steps passed, so the server or the sign-in refused the session: see the reason; --trace FILE records every step",
            ));
            return checks;
        }
    }
    match &doc["tools"] {
        Value::Array(tools) => {
            let names: Vec<&str> = tools
                .iter()
                .filter_map(|t| t["name"].as_str())
                .take(8)
                .collect();
            checks.push(Check::new(
                "tools/list",
                Outcome::Passed,
                format!(
                    "{} tools: {}{}",
                    tools.len(),
                    names.join(", "),
                    if tools.len() > 8 { ", …" } else { "" }
                ),
            ));
        }
        Value::Null => checks.push(Check::new(
            "tools/list",
            Outcome::Skipped,
            "the server offers no tools",
        )),
        other => checks.push(
            Check::new(
                "tools/list",
                Outcome::Failed,
                other["error"]["message"]
                    .as_str()
                    .unwrap_or("failed")
                    .to_owned(),
            )
            .fix("the server could not list its tools; tell its operator"),
        ),
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::CertSummary;

    #[test]
    fn a_certificate_close_to_its_end_is_a_warning_with_the_days_left() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cert = |days: u64| CertSummary {
            subject: Some("mcp.example.com".into()),
            issuer: Some("Example CA".into()),
            names: vec!["mcp.example.com".into()],
            not_after: Some(now + Duration::from_secs(days * 86_400 + 60)),
        };
        let soon = tls_check(&cert(3), "verified", now);
        assert_eq!(soon.outcome, Outcome::Warning);
        assert!(soon.to_json()["fix"].as_str().unwrap().contains("3 days"));
        let fine = tls_check(&cert(90), "verified", now);
        assert_eq!(fine.outcome, Outcome::Passed);
        let detail = fine.to_json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.starts_with(
                "certificate for mcp.example.com, issued by Example CA, valid until 2027-"
            ),
            "{detail}"
        );
        let unknown = tls_check(&CertSummary::default(), "verified", now);
        assert_eq!(unknown.outcome, Outcome::Passed);
    }
}
