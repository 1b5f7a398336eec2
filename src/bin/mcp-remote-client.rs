//! `mcp-remote-client`: connect to a remote MCP server with the same actors as
//! the proxy, print its tools, resources and prompts, and exit — 0 when the
//! server answered, 1 with the reason when it did not. A quick way to check a
//! URL, headers and network before putting them in an MCP client's config.

use actix::{Actor, Context, Handler, Message, Recipient, System};
use actors::messages::{ClientFrame, ServerFrame, Shutdown};
use clap::Parser;
use machines::jsonrpc::{parse_incoming, Incoming};
use mcp_remote::cli::Cli;
use mcp_remote::settings::Settings;
use mcp_remote::{logging, wiring};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI32, Ordering};

/// The exit code, set by the probe before it asks the session to stop.
static EXIT_CODE: AtomicI32 = AtomicI32::new(1);

/// The listing steps, in order: method and the capability that must be present.
const STEPS: [(&str, &str); 3] = [
    ("tools/list", "tools"),
    ("resources/list", "resources"),
    ("prompts/list", "prompts"),
];

/// Plays the host: sends initialize and the list requests, prints the answers.
struct Probe {
    /// Where requests go.
    frames: Option<Recipient<ClientFrame>>,
    /// Who is told to stop.
    session: Option<Recipient<Shutdown>>,
    /// Server capabilities from the initialize result.
    capabilities: Value,
    /// Index into `STEPS` of the request in flight (after initialize).
    step: usize,
}

impl Probe {
    fn send(&self, message: Value) {
        let bytes = serde_json::to_vec(&message).unwrap_or_default();
        if let (Some(frames), Ok(Incoming::Single(m))) = (&self.frames, parse_incoming(bytes)) {
            frames.do_send(ClientFrame::Incoming(Incoming::Single(m)));
        }
    }

    fn next_step(&mut self) {
        while self.step < STEPS.len() {
            let (method, capability) = STEPS[self.step];
            if self.capabilities.get(capability).is_some() {
                self.send(json!({"jsonrpc": "2.0", "id": self.step + 1, "method": method}));
                return;
            }
            println!("\n{}: not offered by the server", title(method));
            self.step += 1;
        }
        self.finish(0);
    }

    fn finish(&mut self, code: i32) {
        EXIT_CODE.store(code, Ordering::SeqCst);
        if let Some(session) = self.session.take() {
            session.do_send(Shutdown {
                reason: "mcp-remote-client is done",
            });
        }
    }

    fn on_message(&mut self, message: Value) {
        // Server → client requests: answer what a listing client can.
        if let (Some(method), Some(id)) = (
            message.get("method").and_then(Value::as_str),
            message.get("id"),
        ) {
            let answer = match method {
                "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                "roots/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"roots": []}}),
                _ => {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "mcp-remote-client does not support this request"}})
                }
            };
            self.send(answer);
            return;
        }
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            return;
        };
        if let Some(error) = message.get("error") {
            let text = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            if id == 0 {
                eprintln!("mcp-remote-client: the server did not initialize: {text}");
                return self.finish(1);
            }
            println!("\n{}: error: {text}", title(STEPS[self.step].0));
            self.step += 1;
            return self.next_step();
        }
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        if id == 0 {
            let info = &result["serverInfo"];
            println!(
                "Connected to {} {} (protocol {})",
                info["name"].as_str().unwrap_or("?"),
                info["version"].as_str().unwrap_or("?"),
                result["protocolVersion"].as_str().unwrap_or("?")
            );
            if let Some(instructions) = result["instructions"].as_str() {
                println!("Instructions: {instructions}");
            }
            self.capabilities = result["capabilities"].clone();
            self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
            return self.next_step();
        }
        let (method, _) = STEPS[self.step];
        let (field, name_key) = match method {
            "tools/list" => ("tools", "name"),
            "resources/list" => ("resources", "uri"),
            _ => ("prompts", "name"),
        };
        let items = result[field].as_array().cloned().unwrap_or_default();
        println!("\n{} ({}):", title(method), items.len());
        for item in items {
            let name = item[name_key].as_str().unwrap_or("?");
            match item["description"].as_str() {
                Some(d) => println!("  {name} — {}", d.lines().next().unwrap_or("")),
                None => println!("  {name}"),
            }
        }
        self.step += 1;
        self.next_step();
    }
}

fn title(method: &str) -> &'static str {
    match method {
        "tools/list" => "Tools",
        "resources/list" => "Resources",
        _ => "Prompts",
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<ServerFrame> for Probe {
    type Result = ();
    fn handle(&mut self, ServerFrame(line): ServerFrame, _: &mut Context<Self>) {
        match serde_json::from_slice::<Value>(&line) {
            Ok(message) => self.on_message(message),
            Err(e) => eprintln!("mcp-remote-client: unreadable message from the server: {e}"),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcp-remote-client: {e}");
            std::process::exit(1);
        }
    };
    let guard = logging::start("mcp-remote-client", &settings);
    let system = System::new();
    let started = system.block_on(async {
        let probe = Probe {
            frames: None,
            session: None,
            capabilities: Value::Null,
            step: 0,
        }
        .start();
        let core = wiring::start_core(&settings, probe.clone().recipient(), None, wiring::seed())?;
        wiring::watch_signals(core.session.clone().recipient());
        let frames = core.session.clone().recipient();
        let session = core.session.recipient();
        probe.do_send(Start { frames, session });
        Ok::<_, actors::http::HttpSetupError>(())
    });
    let code = match started {
        Ok(()) => match system.run_with_code() {
            Ok(_) => EXIT_CODE.load(Ordering::SeqCst),
            Err(_) => 1,
        },
        Err(e) => {
            eprintln!("mcp-remote-client: {e}");
            1
        }
    };
    drop(guard);
    std::process::exit(code);
}

/// Hand the probe its peers and start.
#[derive(Message)]
#[rtype(result = "()")]
struct Start {
    frames: Recipient<ClientFrame>,
    session: Recipient<Shutdown>,
}

impl Handler<Start> for Probe {
    type Result = ();
    fn handle(&mut self, start: Start, _: &mut Context<Self>) {
        self.frames = Some(start.frames);
        self.session = Some(start.session);
        self.send(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
                       "clientInfo": {"name": "mcp-remote-client", "version": env!("CARGO_PKG_VERSION")}}
        }));
    }
}
