//! `mcp-remote-client`: connect to a remote MCP server with the same actors as
//! the proxy, print its tools, resources and prompts, and exit — 0 when the
//! server answered, 1 with the reason when it did not. A quick way to check a
//! URL, headers and network before putting them in an MCP client's config.
//! `--call TOOL --args JSON` calls one tool instead; `--json` prints one JSON
//! document instead of text.

use actix::{Actor, Context, Handler, Message, Recipient, System};
use actors::messages::{ClientFrame, ServerFrame, Shutdown};
use clap::Parser;
use machines::jsonrpc::{parse_incoming, Incoming};
use mcp_remote::cli::Cli;
use mcp_remote::doctor::{self, Check, Outcome};
use mcp_remote::settings::Settings;
use mcp_remote::{logging, servers, wiring};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `println!` that never panics: a reader that went away (`| head`) must not
/// leave the client hanging with a dead actor.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The exit code, set by the probe before it asks the session to stop.
static EXIT_CODE: AtomicI32 = AtomicI32::new(1);

/// The listing steps, in order: method and the capability that must be present.
const STEPS: [(&str, &str); 3] = [
    ("tools/list", "tools"),
    ("resources/list", "resources"),
    ("prompts/list", "prompts"),
];

/// `mcp-remote-client`'s own flags, beside every flag of `mcp-remote`.
#[derive(Parser, Debug)]
#[command(
    name = "mcp-remote-client",
    version,
    about = "Connect to a remote MCP server the way mcp-remote does, list its tools, resources and prompts (or call one tool), and exit: 0 when it answered, 1 with the reason.",
    mut_arg("server_url", |a| a.required(false).required_unless_present("list_servers").default_value("").hide_default_value(true)),
    mut_arg("clean", |a| a.help("Forget this server's stored tokens, client registration and remembered transport, print what was removed, and exit (with --call or --doctor: forget, then sign in anew)")),
    after_help = "Examples:\n  mcp-remote-client https://remote.example.com/mcp\n  mcp-remote-client https://remote.example.com/mcp --json\n  mcp-remote-client https://remote.example.com/mcp --call echo --args '{\"text\":\"hi\"}'\n  mcp-remote-client https://remote.example.com/mcp --trace bug.jsonl\n  mcp-remote-client https://remote.example.com/mcp --doctor\n  mcp-remote-client --list-servers\n  mcp-remote-client https://remote.example.com/mcp --clean\n\nAdd this proxy to an MCP client's config (Claude Desktop, Cursor, Windsurf, Claude Code, VS Code):\n  mcp-remote-client config add https://remote.example.com/mcp --client claude-desktop\n  mcp-remote-client config list\n  mcp-remote-client config --help\n\nShell completions and man pages:\n  mcp-remote-client completions bash|zsh|fish|powershell|elvish [--program mcp-remote-client]\n  mcp-remote-client man [DIR]"
)]
struct ClientCli {
    #[command(flatten)]
    common: Cli,

    /// Call this tool (after initialize) instead of listing; the exit code is 1
    /// when the call fails or its result is an error.
    #[arg(long, value_name = "TOOL", help_heading = "Client")]
    call: Option<String>,

    /// The tool's arguments for --call, as a JSON object (default {}).
    #[arg(long, value_name = "JSON", requires = "call", help_heading = "Client")]
    args: Option<String>,

    /// Print one JSON document on stdout instead of text: the server, and the
    /// lists (or the call's result); an error as {"error": …}.
    #[arg(long, help_heading = "Client")]
    json: bool,

    /// Walk the path to the server step by step (URL and flags, DNS, TCP, proxy,
    /// TLS, transport, discovery, registration, stored credentials, sign-in,
    /// initialize, tools/list) and print each as passed or failed, with the reason
    /// and the fix. Exit 0 only when every step passed.
    #[arg(long, help_heading = "Client", conflicts_with = "call")]
    doctor: bool,

    /// List every server with stored credentials in the config folder: its URL
    /// where known, key, token expiry, issuer and remembered transport. No URL needed.
    #[arg(long, help_heading = "Client", conflicts_with_all = ["call", "doctor"])]
    list_servers: bool,
}

/// What the probe does after `initialize`.
enum Task {
    /// List tools, resources and prompts.
    List,
    /// Call one tool with these arguments.
    Call { tool: String, arguments: Value },
}

/// Plays the host: sends initialize and the list requests, prints the answers.
struct Probe {
    /// List, or call one tool.
    task: Task,
    /// `--json`: collect into one document, printed at the end.
    json: Option<Value>,
    /// `--doctor`: the collected document goes here instead of stdout.
    report: Option<Arc<Mutex<Option<Value>>>>,
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
        if let Task::Call { tool, arguments } = &self.task {
            if self.step == 0 {
                let request = json!({"jsonrpc": "2.0", "id": CALL_ID, "method": "tools/call",
                                     "params": {"name": tool, "arguments": arguments}});
                self.step = STEPS.len();
                self.send(request);
                return;
            }
        }
        while self.step < STEPS.len() {
            let (method, capability) = STEPS[self.step];
            if self.capabilities.get(capability).is_some() {
                self.send(json!({"jsonrpc": "2.0", "id": self.step + 1, "method": method}));
                return;
            }
            match &mut self.json {
                Some(doc) => doc[capability] = Value::Null,
                None => say!("\n{}: not offered by the server", title(method)),
            }
            self.step += 1;
        }
        self.finish(0);
    }

    /// The answer to `--call`.
    fn call_answered(&mut self, message: &Value) {
        let failed =
            message.get("error").is_some() || message["result"]["isError"].as_bool() == Some(true);
        match &mut self.json {
            Some(doc) => match message.get("error") {
                Some(error) => doc["error"] = error.clone(),
                None => doc["result"] = message["result"].clone(),
            },
            None => match message.get("error") {
                Some(error) => say!(
                    "\nerror: {}",
                    error["message"].as_str().unwrap_or("unknown error")
                ),
                None => {
                    let result = &message["result"];
                    say!("\nResult{}:", if failed { " (an error)" } else { "" });
                    for item in result["content"].as_array().into_iter().flatten() {
                        match item["text"].as_str() {
                            Some(text) => say!("{text}"),
                            None => say!("{item}"),
                        }
                    }
                    if let Some(structured) = result.get("structuredContent") {
                        say!("{structured}");
                    }
                }
            },
        }
        self.finish(if failed { 1 } else { 0 });
    }

    fn finish(&mut self, code: i32) {
        if let Some(doc) = self.json.take() {
            match &self.report {
                Some(report) => *report.lock().unwrap_or_else(|e| e.into_inner()) = Some(doc),
                None => say!("{doc}"),
            }
        }
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
        if id == CALL_ID {
            return self.call_answered(&message);
        }
        if let Some(error) = message.get("error") {
            let text = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            if id == 0 {
                eprintln!("mcp-remote-client: the server did not initialize: {text}");
                if let Some(doc) = &mut self.json {
                    doc["error"] = error.clone();
                }
                return self.finish(1);
            }
            match &mut self.json {
                Some(doc) => doc[STEPS[self.step].1] = json!({"error": error}),
                None => say!("\n{}: error: {text}", title(STEPS[self.step].0)),
            }
            self.step += 1;
            return self.next_step();
        }
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        if id == 0 {
            let info = &result["serverInfo"];
            match &mut self.json {
                Some(doc) => {
                    doc["server"] = json!({
                        "name": info["name"], "version": info["version"],
                        "protocolVersion": result["protocolVersion"],
                        "instructions": result["instructions"],
                        "capabilities": result["capabilities"],
                    })
                }
                None => {
                    say!(
                        "Connected to {} {} (protocol {})",
                        info["name"].as_str().unwrap_or("?"),
                        info["version"].as_str().unwrap_or("?"),
                        result["protocolVersion"].as_str().unwrap_or("?")
                    );
                    if let Some(instructions) = result["instructions"].as_str() {
                        say!("Instructions: {instructions}");
                    }
                }
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
        if let Some(doc) = &mut self.json {
            doc[field] = Value::Array(items);
            self.step += 1;
            return self.next_step();
        }
        say!("\n{} ({}):", title(method), items.len());
        for item in items {
            let name = item[name_key].as_str().unwrap_or("?");
            match item["description"].as_str() {
                Some(d) => say!("  {name} — {}", d.lines().next().unwrap_or("")),
                None => say!("  {name}"),
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

/// The id of the `--call` request.
const CALL_ID: u64 = 100;

fn main() {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "config") {
        let args = std::iter::once("mcp-remote-client config".into()).chain(argv.drain(2..));
        std::process::exit(mcp_remote::client_config::run(args));
    }
    if argv
        .get(1)
        .is_some_and(|a| a == "completions" || a == "man")
    {
        use clap::CommandFactory;
        let programs = mcp_remote::manuals::Programs {
            proxy: Cli::command(),
            client: ClientCli::command()
                .subcommand(mcp_remote::client_config::ConfigCli::command().name("config")),
        };
        std::process::exit(mcp_remote::manuals::run(argv, programs));
    }
    let client = ClientCli::parse_from(argv);
    if client.list_servers {
        let code = match mcp_remote::settings::credentials_dir() {
            Ok(dir) => servers::print_list(&dir, client.json),
            Err(e) => {
                eprintln!("mcp-remote-client: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let cli = client.common;
    let task = match client.call {
        Some(tool) => {
            let arguments = match client.args.as_deref().map(serde_json::from_str::<Value>) {
                None => json!({}),
                Some(Ok(v)) if v.is_object() => v,
                Some(Ok(_)) | Some(Err(_)) => {
                    eprintln!("mcp-remote-client: --args must be a JSON object, such as '{{\"text\": \"hi\"}}'");
                    std::process::exit(2);
                }
            };
            Task::Call { tool, arguments }
        }
        None => Task::List,
    };
    let json_output = client.json;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // Nothing else reads this terminal: a user signing in from a browser on
        // another machine pastes the address it ended on here.
        actors::oauth::paste::accept_from_terminal();
    }
    let mut settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) if client.doctor => {
            let check = Check::failed(
                "url",
                e.to_string(),
                "see mcp-remote-client --help for the flags and their values",
            );
            report(&[check], json_output);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("mcp-remote-client: {e}");
            std::process::exit(1);
        }
    };
    // A diagnostic reports the server's real answer, never a remembered one.
    settings.initialize_from_memory = false;
    if client.doctor {
        std::process::exit(run_doctor(&settings, json_output));
    }
    if settings.clean && matches!(task, Task::List) {
        std::process::exit(run_clean(&settings, json_output));
    }
    let guard = logging::start("mcp-remote-client", &settings);
    let system = System::new();
    let started = system.block_on(async {
        let probe = Probe {
            task,
            report: None,
            json: json_output.then(|| json!({})),
            frames: None,
            session: None,
            capabilities: Value::Null,
            step: 0,
        }
        .start();
        let core = wiring::start_core(
            &settings,
            actors::session::HostLink::Actor(probe.clone().recipient()),
            wiring::seed(),
        )?;
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

/// `--clean URL` (without --call or --doctor): forget the server's stored
/// credentials and remembered transport, and say what was removed. Returns the exit code.
fn run_clean(settings: &Settings, json_output: bool) -> i32 {
    let shown = machines::trace::redact_url(&settings.url);
    let cleaned = servers::clean(
        &settings.config_dir,
        std::slice::from_ref(&settings.key),
        &shown,
        Duration::from_secs(10),
    );
    let code = if cleaned.failed.is_empty() && cleaned.busy.is_empty() {
        0
    } else {
        1
    };
    if json_output {
        let doc = json!({
            "server": shown,
            "removed": cleaned.removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "failed": cleaned.failed.iter().map(|(p, e)| json!({"file": p.display().to_string(), "reason": e})).collect::<Vec<_>>(),
            "busy": cleaned.busy,
        });
        say!("{doc}");
        return code;
    }
    if cleaned.removed.is_empty() && cleaned.failed.is_empty() && cleaned.busy.is_empty() {
        say!(
            "Nothing stored for {shown} in {} (see mcp-remote-client --list-servers).",
            settings.config_dir.display()
        );
    } else if !cleaned.removed.is_empty() {
        say!("Forgot {shown}:");
        for path in &cleaned.removed {
            say!("  removed {}", path.display());
        }
        say!("The next start signs in anew.");
    }
    for (path, reason) in &cleaned.failed {
        eprintln!(
            "mcp-remote-client: cannot remove {}: {reason}",
            path.display()
        );
    }
    for key in &cleaned.busy {
        eprintln!("mcp-remote-client: another mcp-remote is signing in or refreshing for {key}; nothing of it was removed. Try again when it is done.");
    }
    code
}

/// Print the checks (text or one JSON document).
fn report(checks: &[Check], json_output: bool) {
    if json_output {
        let passed = checks.iter().all(|c| c.outcome != Outcome::Failed);
        let doc = json!({"passed": passed, "steps": checks.iter().map(Check::to_json).collect::<Vec<_>>()});
        say!("{doc}");
    } else {
        for check in checks {
            say!("{}", check.render());
        }
    }
}

/// `--doctor`: the network steps, then a real connection (sign-in, initialize,
/// tools/list) whose sign-in steps are read from the trace's tap. Returns the exit code.
fn run_doctor(settings: &Settings, json_output: bool) -> i32 {
    let records: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = records.clone();
    let tap: actors::trace::Tap = Box::new(move |record: &Value| {
        let wanted = matches!(record["machine"].as_str(), Some("sign_in" | "grant"));
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        if wanted && kept.len() < 1000 {
            kept.push(record.clone());
        }
    });
    let guard = logging::start_with_tap("mcp-remote-client", settings, Some(tap));
    let system = System::new();
    let mut checks = system.block_on(doctor::network_steps(settings));
    if !json_output {
        report(&checks, false);
    }
    let mut code = if checks.iter().any(|c| c.outcome == Outcome::Failed) {
        1
    } else {
        0
    };
    if code == 0 {
        let result: Arc<Mutex<Option<Value>>> = Arc::default();
        let started = system.block_on(async {
            let probe = Probe {
                task: Task::List,
                report: Some(result.clone()),
                json: Some(json!({})),
                frames: None,
                session: None,
                capabilities: Value::Null,
                step: 0,
            }
            .start();
            let core = wiring::start_core(
                settings,
                actors::session::HostLink::Actor(probe.clone().recipient()),
                wiring::seed(),
            )?;
            wiring::watch_signals(core.session.clone().recipient());
            let frames = core.session.clone().recipient();
            let session = core.session.recipient();
            probe.do_send(Start { frames, session });
            Ok::<_, actors::http::HttpSetupError>(())
        });
        if started.is_ok() {
            let _ = system.run_with_code();
        }
        let doc = result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(Value::Null);
        let records = records.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let live = doctor::connection_steps(&records, &doc);
        if !json_output {
            report(&live, false);
        }
        if live.iter().any(|c| c.outcome == Outcome::Failed) {
            code = 1;
        }
        checks.extend(live);
    }
    if json_output {
        report(&checks, true);
    } else if code == 0 {
        say!("\nEvery step passed.");
    }
    drop(guard);
    code
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
