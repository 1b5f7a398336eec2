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
//   MCP_CONFORMANCE_CONTEXT     set by the runner for some scenarios (JSON); read for auth/*
//   MCP_CONFORMANCE_BROWSER     auth/* only: the $BROWSER given to the proxy
//                               (default: browser.sh next to this file)
//
// auth/* scenarios (MCP_CONFORMANCE_SCENARIO starts with "auth/") also get,
// see authSetup() below: `--allow-http`; per scenario `--client-metadata-url`
// (auth/basic-cimd), `--static-oauth-client-info <json from the context>`
// (auth/pre-registration), `--client-credentials --static-oauth-client-info`
// (auth/client-credentials-*), `--idp-token-endpoint --identity-assertion`
// (auth/enterprise-managed-authorization); always a fresh MCP_REMOTE_CONFIG_DIR (an
// inherited one is ignored), BROWSER=<headless browser shim>, and no desktop
// variables (DISPLAY, XDG_CURRENT_DESKTOP, ...), so that Node mcp-remote's
// `open` -> bundled xdg-open falls through to $BROWSER and never starts a real
// browser. MCP_BROWSER_LOG / MCP_BROWSER_TRACE pass through to the shim.
//
// Flow: initialize (+ notifications/initialized) -> tools/list -> tools/call
// (add_numbers {a:2,b:3} if offered, else the first tool with {}) -> close.
// Elicitation requests are accepted with the schema's defaults; sampling and
// roots are answered with fixed values.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? "";
let proxyEnv = { ...process.env, MCP_REMOTE_CONFIG_DIR: process.env.MCP_REMOTE_CONFIG_DIR || cfgDir };
if (scenario.startsWith("auth/")) {
  const auth = authSetup(scenario);
  proxyArgs.push(...auth.args);
  proxyEnv = auth.env;
}
log(`scenario=${process.env.MCP_CONFORMANCE_SCENARIO ?? "?"} proxy=${proxy} args=${JSON.stringify(proxyArgs)}`);

// The proxy flags and environment for an auth/* scenario (mcp-remote's flags).
function authSetup(name) {
  let ctx = {};
  try {
    ctx = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || "{}");
  } catch (e) {
    log("MCP_CONFORMANCE_CONTEXT is not JSON:", String(e));
  }
  const staticInfo = () => {
    if (!ctx.client_id) throw new Error(`${name}: MCP_CONFORMANCE_CONTEXT has no client_id`);
    const info = { client_id: ctx.client_id };
    if (ctx.client_secret) info.client_secret = ctx.client_secret;
    return JSON.stringify(info);
  };
  const args = ["--allow-http"];
  if (name === "auth/basic-cimd") {
    // The scenario's fixed client_id (not in the context); the AS never fetches it.
    args.push("--client-metadata-url", "https://conformance-test.local/client-metadata.json");
  } else if (name === "auth/pre-registration") {
    args.push("--static-oauth-client-info", staticInfo());
  } else if (name.startsWith("auth/client-credentials-")) {
    args.push("--client-credentials", "--static-oauth-client-info", staticInfo());
    if (ctx.private_key_pem) {
      // private_key_jwt: the key the scenario generated, in a file of our own.
      const keyFile = path.join(cfgDir, "client-key.pem");
      writeFileSync(keyFile, ctx.private_key_pem, { mode: 0o600 });
      args.push("--client-key", keyFile);
    }
  } else if (name === "auth/enterprise-managed-authorization") {
    // The ID token the scenario's identity provider issued, passed through the
    // environment (never on the command line), exchanged there for an ID-JAG.
    args.push(
      "--static-oauth-client-info", staticInfo(),
      "--idp-token-endpoint", ctx.idp_token_endpoint,
      "--idp-client-id", ctx.idp_client_id,
      "--identity-assertion", "${MCP_IDENTITY_ASSERTION}",
    );
  }
  const env = { ...process.env };
  if (ctx.idp_id_token) env.MCP_IDENTITY_ASSERTION = ctx.idp_id_token;
  // No desktop: Node `open`'s xdg-open then uses $BROWSER (see browser.sh).
  for (const k of [
    "DISPLAY", "WAYLAND_DISPLAY", "XDG_CURRENT_DESKTOP", "XDG_SESSION_DESKTOP", "DESKTOP_SESSION",
    "KDE_FULL_SESSION", "GNOME_DESKTOP_SESSION_ID", "MATE_DESKTOP_SESSION_ID", "LXQT_SESSION_CONFIG",
    "DBUS_SESSION_BUS_ADDRESS",
  ]) delete env[k];
  let browser = process.env.MCP_CONFORMANCE_BROWSER || path.join(here, "browser.sh");
  if (/[\s:]/.test(browser)) {
    // xdg-open splits $BROWSER on ':' and on spaces: use a link from the config dir.
    symlinkSync(browser, path.join(cfgDir, "browser"));
    browser = path.join(cfgDir, "browser");
  }
  env.BROWSER = browser;
  env.MCP_REMOTE_CONFIG_DIR = cfgDir; // always fresh: stored tokens would skip the flow
  return { args, env };
}

const transport = new StdioClientTransport({
  command: proxy,
  args: proxyArgs,
  env: proxyEnv,
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
  const call = async (name, args, { allowError = false } = {}) => {
    const t1 = Date.now();
    const res = await client.callTool({ name, arguments: args ?? {} });
    log(`tools/call ${name} -> ${JSON.stringify(res).slice(0, 300)} (${Date.now() - t1} ms)`);
    if (res.isError && !allowError) throw new Error(`tool ${name} returned isError`);
    return res;
  };
  let context = {};
  try {
    context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || "{}");
  } catch {}
  // What each scenario wants the host to do (the checks look for these calls).
  switch (scenario) {
    case "http-standard-headers": {
      for (const t of tools) await call(t.name, {}, { allowError: true });
      const { resources } = await client.listResources();
      for (const r of resources) await client.readResource({ uri: r.uri });
      const { prompts } = await client.listPrompts();
      for (const p of prompts) await client.getPrompt({ name: p.name });
      break;
    }
    case "http-custom-headers":
      for (const c of context.toolCalls ?? []) await call(c.name, c.arguments ?? c.args, { allowError: true });
      break;
    case "http-invalid-tool-headers":
      // The proxy leaves the invalid tools out: whatever is listed may be called.
      for (const t of tools) await call(t.name, t.name === "valid_tool" ? { region: "us-west1" } : {}, { allowError: true });
      break;
    case "json-schema-ref-no-deref":
      break; // listing is the test; its tool has no handler
    case "json-schema-2020-12-preservation": {
      const focal = tools.find((t) => t.name === "json_schema_2020_12_tool");
      await call("json_schema_echo", { schema: focal?.inputSchema ?? {} });
      break;
    }
    case "sep-2322-client-request-state":
      for (const name of ["test_mrtr_echo_state", "test_mrtr_unrelated", "test_mrtr_no_state", "test_mrtr_no_result_type"]) {
        if (tools.some((t) => t.name === name)) await call(name, {}, { allowError: true });
      }
      break;
    default: {
      const pick = tools.find((t) => t.name === "add_numbers") ?? tools[0];
      if (pick) await call(pick.name, pick.name === "add_numbers" ? { a: 2, b: 3 } : {});
    }
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
