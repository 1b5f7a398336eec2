#!/usr/bin/env bash
# Start the @modelcontextprotocol/sdk example server `simpleStreamableHttp`
# with `--oauth` (installed by setup.sh, SDK 1.32.2), on loopback only.
#
#   tests/interop/sdk-oauth-server.sh [--strict] [--print-env]
#
# Two HTTP servers in one process:
#   MCP server  http://localhost:$MCP_PORT/mcp   (resource server; also serves
#               /.well-known/oauth-protected-resource/mcp and, as a copy of
#               the AS's, /.well-known/oauth-authorization-server)
#   AS          http://localhost:$MCP_AUTH_PORT  (SDK mcpAuthRouter with the
#               demo in-memory provider: /authorize /token /register /revoke,
#               /.well-known/oauth-authorization-server, /introspect)
# Both always say `localhost` in their metadata (PRM resource =
# http://localhost:$MCP_PORT/mcp), so give the proxy the localhost URL: with
# 127.0.0.1 the PRM resource would not match the server URL.
#
# The demo AS: DCR open to anyone (20 registrations/hour/IP), scopes_supported
# [mcp:tools], PKCE S256, token_endpoint_auth_methods [client_secret_post,
# none] as the SDK's defaults; /authorize approves at once (302 to
# redirect_uri?code=..&state=.., plus a demo_session cookie): no login page, no
# form, so a browser that follows redirects (browser.sh) completes it.
# Tokens: random UUIDs valid 1 h, kept in memory (a restart forgets them); no
# refresh tokens (the demo's refresh exchange throws). --strict (the example's
# --oauth-strict) also requires resource=http://localhost:$MCP_PORT/mcp at
# /token and a token issued for that resource at /mcp.
#
# Ports: $MCP_PORT / $MCP_AUTH_PORT when set, else free ones. The process
# stays in the foreground (exec node); it is ready when stdout shows
# "MCP Streamable HTTP Server listening on port <MCP_PORT>" and
# "OAuth Authorization Server listening on port <MCP_AUTH_PORT>", or when
# GET /.well-known/oauth-protected-resource/mcp answers 200.
# Lifetime guards of loopback-only.cjs apply (INTEROP_EXIT_ON_STDIN_EOF=1,
# INTEROP_MAX_LIFETIME_MS). --print-env prints MCP_PORT=.. MCP_AUTH_PORT=..
# SDK_OAUTH_URL=.. lines on stdout first (for eval/scripts). NODE overrides
# the node binary (default: the Node 22 from .interop, else node).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PREFIX="${INTEROP_PREFIX:-$REPO/.interop}"
EXAMPLE="$PREFIX/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js"

NODE_BIN="${NODE:-}"
if [[ -z "$NODE_BIN" ]]; then
  if [[ -x "$PREFIX/node_modules/node/bin/node" ]]; then NODE_BIN="$PREFIX/node_modules/node/bin/node"; else NODE_BIN=node; fi
fi

strict=(); print_env=0
for a in "$@"; do
  case "$a" in
    --strict) strict=(--oauth-strict) ;;
    --print-env) print_env=1 ;;
    *) echo "sdk-oauth-server: unknown argument $a" >&2; exit 2 ;;
  esac
done

if [[ ! -f "$EXAMPLE" ]]; then
  "$HERE/setup.sh" >&2 || { echo "sdk-oauth-server: setup failed" >&2; exit 2; }
fi

free_port() {
  "$NODE_BIN" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}
MCP_PORT="${MCP_PORT:-$(free_port)}"
MCP_AUTH_PORT="${MCP_AUTH_PORT:-$(free_port)}"
while [[ "$MCP_AUTH_PORT" == "$MCP_PORT" ]]; do MCP_AUTH_PORT="$(free_port)"; done
export MCP_PORT MCP_AUTH_PORT

if [[ $print_env == 1 ]]; then
  echo "MCP_PORT=$MCP_PORT"
  echo "MCP_AUTH_PORT=$MCP_AUTH_PORT"
  echo "SDK_OAUTH_URL=http://localhost:$MCP_PORT/mcp"
fi
echo "sdk-oauth-server: MCP http://localhost:$MCP_PORT/mcp, AS http://localhost:$MCP_AUTH_PORT${strict:+ (strict)}" >&2

# The example (and both its servers) listen() without a host; the preload binds
# them to 127.0.0.1.
exec "$NODE_BIN" -r "$HERE/loopback-only.cjs" "$EXAMPLE" --oauth "${strict[@]}"
