// Conformance "client" for a stdio proxy: an MCP host built on the official
// SDK (Client + StdioClientTransport) that spawns `<proxy> <serverUrl>` and
// talks to the conformance mock server *through* the proxy.
//
//   node conformance-driver.mjs [extra proxy args...] <serverUrl>
//
// The conformance runner appends the server URL as the last argument and
// never closes our stdin, so the proxy cannot be the --command itself.
//
// Env:
//   MCP_REMOTE_BIN              proxy to spawn (required)
//   MCP_REMOTE_ARGS             extra proxy args, space separated (optional)
//   MCP_CONFORMANCE_SCENARIO    set by the runner; logged only
//   INTEROP_PREFIX              where setup.sh installed the SDK (default $REPO/.interop)
//   DRIVER_TIMEOUT_MS           overall bound (default 25000, below the runner's 30 s)
//
// Flow: initialize (+ notifications/initialized) -> tools/list -> tools/call
// (add_numbers {a:2,b:3} if offered, else the first tool with {}) -> close.
// Elicitation requests are accepted with the schema's defaults; sampling and
// roots are answered with fixed values.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const prefix = process.env.INTEROP_PREFIX || path.resolve(here, "../../.interop");
const req = createRequire(path.join(prefix, "node_modules", "x.js"));
const sdk = (p) => import(req.resolve(`@modelcontextprotocol/sdk/${p}`));
const { Client } = await sdk("client/index.js");
const { StdioClientTransport } = await sdk("client/stdio.js");
const T = await sdk("types.js");

const log = (...a) => console.error("[driver]", ...a);
const argv = process.argv.slice(2);
const url = argv.pop();
const proxy = process.env.MCP_REMOTE_BIN;
if (!url || !proxy) {
  log("usage: MCP_REMOTE_BIN=<proxy> node conformance-driver.mjs [proxy args] <serverUrl>");
  process.exit(2);
}
const proxyArgs = [url, ...argv, ...(process.env.MCP_REMOTE_ARGS || "").split(" ").filter(Boolean)];
const cfgDir = mkdtempSync(path.join(os.tmpdir(), "mcp-remote-conformance-"));
const timeoutMs = Number(process.env.DRIVER_TIMEOUT_MS || 25000);
log(`scenario=${process.env.MCP_CONFORMANCE_SCENARIO ?? "?"} proxy=${proxy} args=${JSON.stringify(proxyArgs)}`);

const transport = new StdioClientTransport({
  command: proxy,
  args: proxyArgs,
  env: { ...process.env, MCP_REMOTE_CONFIG_DIR: process.env.MCP_REMOTE_CONFIG_DIR || cfgDir },
  stderr: "inherit",
});
const client = new Client(
  { name: "mcp-remote-conformance-driver", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
);
client.setRequestHandler(T.ElicitRequestSchema, async (r) => {
  const props = r.params?.requestedSchema?.properties || {};
  const content = {};
  for (const [k, s] of Object.entries(props)) if (s && s.default !== undefined) content[k] = s.default;
  log("elicitation/create -> accept with defaults", JSON.stringify(content));
  return { action: "accept", content };
});
client.setRequestHandler(T.CreateMessageRequestSchema, async () => ({
  role: "assistant",
  content: { type: "text", text: "conformance driver sample" },
  model: "conformance-driver",
  stopReason: "endTurn",
}));
client.setRequestHandler(T.ListRootsRequestSchema, async () => ({ roots: [] }));

let exitCode = 1;
const timer = setTimeout(async () => {
  log(`timed out after ${timeoutMs} ms`);
  await transport.close().catch(() => {});
  rmSync(cfgDir, { recursive: true, force: true });
  process.exit(1);
}, timeoutMs);

try {
  const t0 = Date.now();
  await client.connect(transport);
  log(`initialized in ${Date.now() - t0} ms; server`, JSON.stringify(client.getServerVersion()));
  const { tools } = await client.listTools();
  log("tools:", tools.map((t) => t.name).join(", ") || "(none)");
  const pick = tools.find((t) => t.name === "add_numbers") ?? tools[0];
  if (pick) {
    const args = pick.name === "add_numbers" ? { a: 2, b: 3 } : {};
    const t1 = Date.now();
    const res = await client.callTool({ name: pick.name, arguments: args });
    log(`tools/call ${pick.name} -> ${JSON.stringify(res).slice(0, 300)} (${Date.now() - t1} ms)`);
    if (res.isError) throw new Error(`tool ${pick.name} returned isError`);
  }
  exitCode = 0;
} catch (e) {
  log("error:", e?.stack || String(e));
} finally {
  clearTimeout(timer);
  await client.close().catch(() => {});
  rmSync(cfgDir, { recursive: true, force: true });
}
process.exit(exitCode);
