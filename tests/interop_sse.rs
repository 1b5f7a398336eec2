//! Interop test over the legacy HTTP+SSE transport (protocol 2024-11-05):
//! the full server-everything session of `interop_everything.rs` (tools,
//! resources, prompts, completion, sampling, elicitation, roots, progress,
//! logging, 200 pipelined calls, 1 MiB each way), against server-everything
//! started in `sse` mode, run twice:
//!
//! * `sse_only::*`: the proxy is started as `<url> --transport sse-only`;
//! * `fallback::*`: the proxy gets only the URL (default strategy,
//!   http-first): its POST of `initialize` to the SSE URL is answered 404, so
//!   it must fall back to `GET <url>` as an SSE stream.
//!
//!   host (this test) ⇄ stdio ⇄ proxy ⇄ GET /sse + POST /message ⇄ server-everything
//!
//! * Server: `PORT=<p> node -r tests/interop/loopback-only.cjs
//!   .interop/node_modules/@modelcontextprotocol/server-everything/dist/index.js sse`,
//!   one per test process, URL `http://127.0.0.1:<p>/sse`. Ready when
//!   `POST /sse` answers 404 (stderr also shows `Server is running on port
//!   <p>`). `GET /sse` answers 200 `text/event-stream` whose first event is
//!   `event: endpoint` / `data: /message?sessionId=<uuid>`; every POST there
//!   answers 202 `Accepted` and all server→client messages (responses,
//!   notifications, requests) come as `event: message` on the GET stream.
//!   A POST to `/message` with an unknown sessionId is never answered.
//! * `server_facts::*` checks those facts directly (no proxy), so that a
//!   change of the server shows up as such and not as a proxy failure.
//! * Proxy, logs and env as in `interop_everything.rs` (`MCP_REMOTE_BIN`,
//!   `INTEROP_PREFIX`); logs in `target/tmp/interop-sse/`.
//! * The test bodies are in `interop_common/everything_suite.rs`.

mod interop_common;

use interop_common::{
    everything_suite as suite, log_dir, post_initialize_status, sse_stream_head, start_everything,
    EverythingMode, Server, Target,
};
use std::sync::OnceLock;

const LOGS: &str = "interop-sse";
const SERVER_NAME: &str = "mcp-servers/everything";

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static SSE_ONLY: OnceLock<Target> = OnceLock::new();
static FALLBACK: OnceLock<Target> = OnceLock::new();

/// server-everything in `sse` mode, once per test process (it exits with
/// this process).
fn server() -> &'static Server {
    match SERVER.get_or_init(|| start_everything(EverythingMode::Sse, &log_dir(LOGS))) {
        Ok(s) => s,
        Err(e) => panic!("could not start server-everything (sse): {e}"),
    }
}

fn sse_only_target() -> &'static Target {
    SSE_ONLY.get_or_init(|| {
        Target::new(
            "sse-only",
            server(),
            &["--transport", "sse-only"],
            &log_dir(LOGS),
            SERVER_NAME,
        )
    })
}

fn fallback_target() -> &'static Target {
    FALLBACK.get_or_init(|| Target::new("fallback", server(), &[], &log_dir(LOGS), SERVER_NAME))
}

/// One `#[tokio::test]` per suite function, each on `$target()`.
macro_rules! suite_tests {
    ($target:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                suite::$name($target()).await
            }
        )*
    };
}

/// `--transport sse-only`.
mod sse_only {
    use super::*;
    suite_tests!(sse_only_target:
        lifecycle_tools_list_ping_logging,
        echo_special_characters_exact,
        resources_prompts_completion,
        sampling_and_elicitation_round_trips,
        roots_round_trips,
        progress_before_result,
        pipelined_200_calls,
        one_mebibyte_each_way,
    );
}

/// No `--transport`: the default strategy must fall back from the 404.
mod fallback {
    use super::*;
    suite_tests!(fallback_target:
        lifecycle_tools_list_ping_logging,
        echo_special_characters_exact,
        resources_prompts_completion,
        sampling_and_elicitation_round_trips,
        roots_round_trips,
        progress_before_result,
        pipelined_200_calls,
        one_mebibyte_each_way,
    );
}

/// What the fallback depends on, checked on the server itself.
mod server_facts {
    use super::*;

    /// POST of an initialize to the SSE URL: 404 (Express "Cannot POST /sse").
    #[test]
    fn post_to_sse_url_is_404() {
        let s = server();
        assert_eq!(post_initialize_status(s.port, "/sse"), Some(404));
    }

    /// GET /sse: 200 text/event-stream, first event `endpoint` with a
    /// relative `/message?sessionId=…` URL.
    #[test]
    fn get_sse_url_sends_endpoint_event() {
        let s = server();
        let text = sse_stream_head(s.port, "/sse");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{text}"
        );
        let body = &text[text.find("\r\n\r\n").expect("end of headers")..];
        assert!(body.contains("event: endpoint\n"), "{text}");
        assert!(body.contains("data: /message?sessionId="), "{text}");
    }
}
