//! Black-box tests of the network settings a VPN or a corporate network brings (issue 5):
//! a private certificate authority, an HTTP proxy, and IPv4-only connections.
//!
//! - **TLS**: a loopback HTTPS MCP server whose certificate a throwaway CA (made by the test)
//!   signed is refused without that CA (the host gets a JSON-RPC error, the server sees no
//!   request) and reached with `NODE_EXTRA_CA_CERTS=<ca.pem>` or `--extra-ca-certs <ca.pem>`;
//!   another CA, or a certificate for another name, is still refused.
//! - **Proxy**: a loopback forward proxy ([`testbed::ForwardProxy`]) in `HTTPS_PROXY` /
//!   `HTTP_PROXY` sees the traffic only with `--enable-proxy` (a `CONNECT` for https, an
//!   absolute-form request for http), and not when `NO_PROXY` covers the server. reqwest
//!   0.13 (hyper-util's matcher) exempts no destination by default, loopback included, so a
//!   server on `127.0.0.1` is a fair test: only `NO_PROXY` exempts it.
//! - **`--ipv4`**: an IPv6-only server (`[::1]`) is reached without the flag and not with
//!   it; where `localhost` resolves to `::1` first and `127.0.0.1` too, the flag makes the
//!   connection go to `127.0.0.1` (that test is `#[ignore]`d: it needs such a hosts file;
//!   `actors`' http tests check the same with a resolver override on every machine).
//!
//! Every server is on loopback and every wait is bounded.

mod common;

use common::{call, text, Proxy, WAIT};
use serde_json::{json, Value};
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use testbed::{Config, ForwardProxy, Listen, ProxiedRequest, Testbed, ThrowawayCa};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::Command;

/// The variables that steer TLS trust and proxies. Every proxy these tests start has them
/// removed from the environment it inherits from the test runner, then set as the test
/// says, so a runner's own proxy or CA settings cannot change the outcome. (An empty
/// `NODE_EXTRA_CA_CERTS` counts as unset: [`empty_node_extra_ca_certs_counts_as_unset`].)
const NETWORK_VARS: &[&str] = &[
    "NODE_EXTRA_CA_CERTS",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    // Set, it makes reqwest ignore the proxy variables (hyper-util's CGI guard, httpoxy).
    "REQUEST_METHOD",
];

/// Starts `binary <args…>` with a private config folder, [`NETWORK_VARS`] removed and then
/// `env` set, its pipes wired as [`Proxy::spawn`] does.
fn spawn_binary(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env("MCP_REMOTE_CONFIG_DIR", scratch("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in NETWORK_VARS {
        cmd.env_remove(name);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().expect("spawn the binary");
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut err = child.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    Proxy {
        child,
        stdin,
        stdout,
        stderr,
    }
}

/// `mcp-remote <args…>` in a clean network environment plus `env`.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proxy {
    spawn_binary(common::binary(), args, env)
}

/// A fresh scratch folder for one test's PEM files.
fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mcp-remote-netenv-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// An HTTPS testbed on 127.0.0.1 whose certificate (for `names`) a new CA signed, and that
/// CA's PEM file.
async fn tls_testbed(names: &[&str]) -> (Testbed, PathBuf) {
    let ca = ThrowawayCa::new("mcp-remote test CA").expect("CA");
    let identity = ca.issue(names).expect("server certificate");
    let ca_file = scratch("tls").join("ca.pem");
    ca.write_ca_pem(&ca_file).expect("write ca.pem");
    let tb = Testbed::start_tls(Config::default(), &identity)
        .await
        .expect("HTTPS testbed starts");
    assert!(tb.url().starts_with("https://127.0.0.1:"), "{}", tb.url());
    (tb, ca_file)
}

/// The host's `initialize` (id 0), for tests that expect it to fail.
fn initialize_request() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "netenv-test", "version": "1.0"}}})
}

/// Initializes through the proxy and makes one `echo` call; panics if either fails.
async fn assert_reached(p: &mut Proxy) {
    p.initialize("2025-06-18").await;
    p.send(call(1, "echo", json!({"text": "through"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "through", "{r}");
}

/// Sends `initialize` and returns the error the host gets for it (panics on a result).
async fn initialize_error(p: &mut Proxy) -> Value {
    p.send(initialize_request()).await;
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(
        r.get("result").is_none(),
        "initialize should have failed: {r}"
    );
    let error = r["error"].clone();
    assert!(error["code"].is_i64(), "a JSON-RPC error: {r}");
    assert!(error["message"].is_string(), "a JSON-RPC error: {r}");
    error
}

/// The whole error, message and data, as one lowercase text to search.
fn error_text(error: &Value) -> String {
    format!("{} {}", error["message"], error["data"]).to_lowercase()
}

/// Checks the client never refused the testbed's certificate (sent no TLS alert). A
/// handshake cut by the proxy's exit (a connection reset) is no refusal.
fn assert_no_certificate_refusal(tb: &Testbed) {
    let failures = tb.tls_failures();
    assert!(
        failures.iter().all(|f| !f.contains("alert")),
        "the client refused the certificate: {failures:?}"
    );
}

/// Closes the proxy and checks it exits 0; returns its stderr.
async fn close_ok(p: Proxy) -> String {
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0), "exit status; stderr:\n{stderr}");
    stderr
}

// ---------------------------------------------------------------------------------------
// TLS with a private CA

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_signed_by_an_unknown_ca_is_refused_with_a_clear_error() {
    let (tb, _ca) = tls_testbed(&["127.0.0.1", "localhost"]).await;
    let mut p = spawn(&[&tb.url()], &[]);
    let error = initialize_error(&mut p).await;
    let text = error_text(&error);
    eprintln!("the host got: {error}");
    assert!(
        text.contains("certificate") && text.contains("unknownissuer"),
        "the error names the certificate problem: {error}"
    );
    assert!(
        text.contains("node_extra_ca_certs") && text.contains("--extra-ca-certs"),
        "the error tells how to trust the server's CA: {error}"
    );
    let stderr = close_ok(p).await;
    eprintln!("stderr:\n{stderr}");
    assert!(
        tb.requests().is_empty(),
        "no HTTP request got past the handshake: {:?}",
        tb.requests()
    );
    let failures = tb.tls_failures();
    assert!(
        failures.iter().any(|f| f.contains("UnknownCA")),
        "the client refused the certificate with an unknown_ca alert: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_is_reached_with_node_extra_ca_certs() {
    let (tb, ca) = tls_testbed(&["127.0.0.1"]).await;
    let ca = ca.to_str().expect("UTF-8 path");
    let mut p = spawn(&[&tb.url()], &[("NODE_EXTRA_CA_CERTS", ca)]);
    assert_reached(&mut p).await;
    close_ok(p).await;
    assert_no_certificate_refusal(&tb);
    assert!(tb.requests().iter().any(|r| r.method == "POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_is_reached_with_the_extra_ca_certs_flag() {
    let (tb, ca) = tls_testbed(&["127.0.0.1"]).await;
    let ca = ca.to_str().expect("UTF-8 path");
    let mut p = spawn(&[&tb.url(), "--extra-ca-certs", ca], &[]);
    assert_reached(&mut p).await;
    close_ok(p).await;
    assert_no_certificate_refusal(&tb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_does_not_make_the_server_trusted() {
    let (tb, _ca) = tls_testbed(&["127.0.0.1"]).await;
    let other = ThrowawayCa::new("some other CA").expect("CA");
    let other_file = scratch("other-ca").join("ca.pem");
    other.write_ca_pem(&other_file).expect("write");
    let other_file = other_file.to_str().expect("UTF-8 path");
    let mut p = spawn(&[&tb.url()], &[("NODE_EXTRA_CA_CERTS", other_file)]);
    let error = initialize_error(&mut p).await;
    assert!(error_text(&error).contains("certificate"), "{error}");
    close_ok(p).await;
    assert!(tb.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_name_is_refused_even_with_its_ca() {
    // Signed by the trusted CA, but for `localhost` only: `https://127.0.0.1` must not
    // accept it (the name check is not skipped for extra CAs).
    let (tb, ca) = tls_testbed(&["localhost"]).await;
    let ca = ca.to_str().expect("UTF-8 path");
    let mut p = spawn(&[&tb.url()], &[("NODE_EXTRA_CA_CERTS", ca)]);
    let error = initialize_error(&mut p).await;
    eprintln!("the host got: {error}");
    assert!(
        error_text(&error).contains("not valid for name"),
        "the error names the name mismatch: {error}"
    );
    close_ok(p).await;
    assert!(tb.requests().is_empty());
}

/// Runs `mcp-remote-client <url>` in a clean network environment plus `env`; returns its
/// exit code, stdout and stderr.
async fn run_client(url: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut client = spawn_binary(env!("CARGO_BIN_EXE_mcp-remote-client"), &[url], env);
    let mut stdout = String::new();
    tokio::time::timeout(WAIT, client.stdout.read_to_string(&mut stdout))
        .await
        .expect("mcp-remote-client finishes in time")
        .expect("read stdout");
    let (code, stderr) = client.close().await;
    (code, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_diagnostics_report_the_untrusted_certificate_and_then_succeed_with_the_ca() {
    let (tb, ca) = tls_testbed(&["127.0.0.1"]).await;
    let (code, _, stderr) = run_client(&tb.url(), &[]).await;
    eprintln!("mcp-remote-client without the CA:\n{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("NODE_EXTRA_CA_CERTS"), "{stderr}");
    let ca = ca.to_str().expect("UTF-8 path");
    let (code, stdout, stderr) = run_client(&tb.url(), &[("NODE_EXTRA_CA_CERTS", ca)]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("echo"), "the tools are listed: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_node_extra_ca_certs_counts_as_unset() {
    // Node treats an empty NODE_EXTRA_CA_CERTS as unset; an MCP host's config that has
    // `"NODE_EXTRA_CA_CERTS": ""` must not keep the proxy from starting.
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let mut p = spawn(&[&tb.url()], &[("NODE_EXTRA_CA_CERTS", "")]);
    assert_reached(&mut p).await;
    close_ok(p).await;
}

// ---------------------------------------------------------------------------------------
// HTTP proxy

/// A forward proxy on loopback.
async fn forward_proxy() -> ForwardProxy {
    ForwardProxy::start().await.expect("forward proxy starts")
}

/// The `host:port` of a testbed URL.
fn authority(tb: &Testbed) -> String {
    let origin = tb.origin();
    origin
        .split_once("://")
        .map(|(_, authority)| authority.to_owned())
        .unwrap_or(origin)
}

/// Environment pointing both proxy variables at `proxy`, with `NO_PROXY` and the extra
/// CA file when given.
fn proxy_env<'a>(
    proxy: &'a str,
    no_proxy: Option<&'a str>,
    ca: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("HTTPS_PROXY", proxy), ("HTTP_PROXY", proxy)];
    if let Some(no_proxy) = no_proxy {
        env.push(("NO_PROXY", no_proxy));
    }
    if let Some(ca) = ca {
        env.push(("NODE_EXTRA_CA_CERTS", ca));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_goes_through_the_proxy_with_enable_proxy() {
    let (tb, ca) = tls_testbed(&["127.0.0.1"]).await;
    let proxy = forward_proxy().await;
    let proxy_url = proxy.url();
    let env = proxy_env(&proxy_url, None, ca.to_str());
    let mut p = spawn(&[&tb.url(), "--enable-proxy"], &env);
    assert_reached(&mut p).await;
    close_ok(p).await;
    let seen = proxy.seen();
    let expected = ProxiedRequest {
        method: "CONNECT".into(),
        target: authority(&tb),
        status: Some(200),
    };
    assert!(
        !seen.is_empty() && seen.iter().all(|r| *r == expected),
        "every connection is a CONNECT tunnel to the server: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_ignores_the_proxy_variables_without_enable_proxy() {
    let (tb, ca) = tls_testbed(&["127.0.0.1"]).await;
    let proxy = forward_proxy().await;
    let proxy_url = proxy.url();
    let env = proxy_env(&proxy_url, None, ca.to_str());
    let mut p = spawn(&[&tb.url()], &env);
    assert_reached(&mut p).await;
    close_ok(p).await;
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_covering_the_server_bypasses_the_proxy() {
    let (tb, ca) = tls_testbed(&["127.0.0.1"]).await;
    let proxy = forward_proxy().await;
    let proxy_url = proxy.url();
    let ca = ca.to_str().expect("UTF-8 path");
    for no_proxy in ["127.0.0.1", "example.com, 127.0.0.0/8"] {
        let env = proxy_env(&proxy_url, Some(no_proxy), Some(ca));
        let mut p = spawn(&[&tb.url(), "--enable-proxy"], &env);
        assert_reached(&mut p).await;
        close_ok(p).await;
        assert!(
            proxy.seen().is_empty(),
            "NO_PROXY={no_proxy}: {:?}",
            proxy.seen()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_through_the_proxy_in_absolute_form_with_enable_proxy() {
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let proxy = forward_proxy().await;
    let proxy_url = proxy.url();
    let env = proxy_env(&proxy_url, None, None);

    let mut p = spawn(&[&tb.url()], &env);
    assert_reached(&mut p).await;
    close_ok(p).await;
    assert!(
        proxy.seen().is_empty(),
        "without the flag: {:?}",
        proxy.seen()
    );

    let mut p = spawn(&[&tb.url(), "--enable-proxy"], &env);
    assert_reached(&mut p).await;
    close_ok(p).await;
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy saw the traffic");
    for r in &seen {
        assert_ne!(r.method, "CONNECT", "plain http is not tunnelled: {seen:?}");
        assert!(
            r.target.starts_with(&format!("{}/", tb.origin())),
            "absolute-form target on the server: {seen:?}"
        );
        assert_eq!(r.status, None, "relayed to the server: {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|r| r.method == "POST" && r.target == tb.url()),
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------------------------
// --ipv4

/// Whether this machine can listen on `::1`.
fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_only_does_not_reach_an_ipv6_only_server() {
    // No silent skip: a machine without `::1` fails this test and says why.
    assert!(
        ipv6_loopback_available(),
        "this test needs an IPv6 loopback (`::1`): none on this machine"
    );
    let listen = Listen {
        ip: Ipv6Addr::LOCALHOST.into(),
        ..Listen::default()
    };
    let tb = Testbed::start_with(Config::default(), listen)
        .await
        .expect("testbed on ::1");
    assert!(tb.url().starts_with("http://[::1]:"), "{}", tb.url());

    let mut p = spawn(&[&tb.url()], &[]);
    assert_reached(&mut p).await;
    close_ok(p).await;
    tb.clear_requests();

    let mut p = spawn(&[&tb.url(), "--ipv4"], &[]);
    let error = initialize_error(&mut p).await;
    eprintln!("with --ipv4 the host got: {error}");
    close_ok(p).await;
    assert!(
        tb.requests().is_empty(),
        "--ipv4 never connects over IPv6: {:?}",
        tb.requests()
    );
}

/// A listener on `[::1]:port` that counts the connections it accepts and drops them.
async fn ipv6_decoy() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)))
        .await
        .expect("bind ::1");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

/// The same through the binary, with the machine's own resolver. Ignored by default,
/// since it needs `localhost` to resolve to `::1` first and to `127.0.0.1` too (a Debian
/// `/etc/hosts` has both); `actors`' `http::tests::ipv4_only_picks_the_ipv4_address_of_a_dual_stack_name`
/// checks the same client set-up with a resolver override, on every machine. Run it with
/// `--ignored` where the hosts file has both entries; elsewhere it fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs `localhost` to resolve to ::1 first and to 127.0.0.1 too; actors' http tests cover --ipv4 everywhere"]
async fn ipv4_only_picks_the_ipv4_address_of_a_dual_stack_name() {
    let addrs: Vec<SocketAddr> = ("localhost", 1)
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    let v6_first = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let has_v4 = addrs.iter().any(SocketAddr::is_ipv4);
    assert!(
        v6_first && has_v4 && ipv6_loopback_available(),
        "localhost resolves to {addrs:?}, not ::1 first and 127.0.0.1 too: this test cannot run here"
    );
    let (port, decoy) = ipv6_decoy().await;
    let tb = Testbed::start_on_port(Config::default(), port)
        .await
        .expect("testbed on 127.0.0.1, the decoy's port");
    let url = format!("http://localhost:{port}/mcp");

    // Control: without the flag the connection goes to ::1 first, the decoy.
    let mut p = spawn(&[&url], &[]);
    p.send(initialize_request()).await;
    let _ = p.recv_within(WAIT).await;
    let _ = p.close().await;
    assert!(
        decoy.load(Ordering::SeqCst) > 0,
        "without --ipv4 the IPv6 address is tried first"
    );
    decoy.store(0, Ordering::SeqCst);

    let mut p = spawn(&[&url, "--ipv4"], &[]);
    assert_reached(&mut p).await;
    close_ok(p).await;
    assert_eq!(
        decoy.load(Ordering::SeqCst),
        0,
        "--ipv4 never connects to ::1"
    );
    assert!(tb.requests().iter().any(|r| r.method == "POST"));
}
