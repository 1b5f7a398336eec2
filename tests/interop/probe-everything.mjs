// Probe a running server-everything over Streamable HTTP with the SDK client
// (no proxy involved) and print the facts the interop test relies on:
// tool names/arguments, which tools need which client capability, and the
// server->client requests/notifications they trigger.
//
//   node tests/interop/probe-everything.mjs http://127.0.0.1:PORT/mcp
//
// Resolves the SDK from $REPO/.interop (run tests/interop/setup.sh first).
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const prefix = process.env.INTEROP_PREFIX || path.resolve(here, "../../.interop");
const req = createRequire(path.join(prefix, "node_modules", "x.js"));
const sdk = (p) => import(req.resolve(`@modelcontextprotocol/sdk/${p}`));
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const T = await sdk("types.js");

const url = new URL(process.argv[2] || "http://127.0.0.1:3001/mcp");
const seen = [];
const out = (k, v) => console.log(`${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);

async function connect(capabilities) {
  const client = new Client({ name: "probe", version: "0.0.1" }, { capabilities });
  client.fallbackNotificationHandler = async (n) => seen.push(n.method);
  if (capabilities.sampling) {
    client.setRequestHandler(T.CreateMessageRequestSchema, async (r) => {
      seen.push("sampling/createMessage");
      out("sampling/createMessage params", r.params);
      return { role: "assistant", content: { type: "text", text: "probe-sampled" }, model: "probe-model", stopReason: "endTurn" };
    });
  }
  if (capabilities.elicitation) {
    client.setRequestHandler(T.ElicitRequestSchema, async (r) => {
      seen.push("elicitation/create");
      out("elicitation/create requestedSchema.required", r.params.requestedSchema?.required);
      return { action: "accept", content: { name: "Probe Person", check: true } };
    });
  }
  if (capabilities.roots) {
    client.setRequestHandler(T.ListRootsRequestSchema, async () => {
      seen.push("roots/list");
      return { roots: [{ uri: "file:///probe/root", name: "probe-root" }] };
    });
  }
  await client.connect(new StreamableHTTPClientTransport(url));
  return client;
}

// 1. no capabilities
{
  const c = await connect({});
  await new Promise((r) => setTimeout(r, 500));
  const tools = (await c.listTools()).tools;
  out("tools (no client caps)", tools.map((t) => t.name));
  await c.close();
}
// 2. sampling + elicitation + roots
{
  seen.length = 0;
  const c = await connect({ sampling: {}, elicitation: {}, roots: { listChanged: true } });
  out("server capabilities", c.getServerCapabilities());
  await new Promise((r) => setTimeout(r, 800)); // server asks roots/list 350 ms after initialized
  out("seen after initialized", seen);
  const tools = (await c.listTools()).tools;
  out("tools (sampling+elicitation+roots)", tools.map((t) => t.name));
  for (const t of tools) out(`  schema ${t.name}`, t.inputSchema?.properties ? Object.keys(t.inputSchema.properties) : {});
  const text = (r) => r.content.map((x) => x.text ?? `[${x.type}]`).join(" | ");
  out("echo", text(await c.callTool({ name: "echo", arguments: { message: "a\nb\u2028c é😀" } })));
  out("get-sum", text(await c.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } })));
  out("trigger-sampling-request", text(await c.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } })));
  out("trigger-elicitation-request", text(await c.callTool({ name: "trigger-elicitation-request", arguments: {} })).slice(0, 200));
  out("get-roots-list", text(await c.callTool({ name: "get-roots-list", arguments: {} })).slice(0, 120));
  const prog = [];
  const lr = await c.callTool({ name: "trigger-long-running-operation", arguments: { duration: 0.5, steps: 5 } }, undefined, {
    onprogress: (p) => prog.push(p),
  });
  out("trigger-long-running-operation", text(lr));
  out("  progress", prog);
  const big = "x".repeat(1 << 20);
  const r = await c.callTool({ name: "echo", arguments: { message: big } });
  out("echo 1MiB result length", r.content[0].text.length);
  out("resources/list", (await c.listResources()).resources.map((x) => x.uri));
  out("resources/templates/list", (await c.listResourceTemplates()).resourceTemplates.map((x) => x.uriTemplate));
  out("resources/read text/1", (await c.readResource({ uri: "demo://resource/dynamic/text/1" })).contents[0]);
  out("prompts/list", (await c.listPrompts()).prompts.map((p) => [p.name, (p.arguments || []).map((a) => a.name + (a.required ? "*" : ""))]));
  out("prompts/get args-prompt", (await c.getPrompt({ name: "args-prompt", arguments: { city: "Paris" } })).messages);
  out("logging/setLevel", await c.setLoggingLevel("debug"));
  out("ping", await c.ping());
  out("notifications seen", [...new Set(seen)]);
  await c.close();
}
process.exit(0);
