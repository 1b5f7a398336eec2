#!/usr/bin/env bash
# Install the pinned Node tooling used by the interop tests into $REPO/.interop
# (gitignored). Idempotent: does nothing when every pinned version is already
# installed. Prints where things are.
#
#   tests/interop/setup.sh            # install if needed, print locations
#   tests/interop/setup.sh --env      # same, but print only KEY=VALUE lines
#                                     # (for `eval "$(tests/interop/setup.sh --env)"`)
#
# Needs: node (any >= 18) and npm on PATH, and the npm registry.
# Also makes a Python venv ($PREFIX/venv) with the pinned PyPI `mcp` (FastMCP,
# for tests/interop/fastmcp_server.py): needs python3 >= 3.10 and PyPI.
# INTEROP_SKIP_PYTHON=1 leaves the venv out.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PREFIX="${INTEROP_PREFIX:-$REPO/.interop}"

# ---- pinned versions (exact) ------------------------------------------------
SERVER_EVERYTHING_VERSION="2026.8.31"   # @modelcontextprotocol/server-everything
CONFORMANCE_VERSION="0.1.16"            # @modelcontextprotocol/conformance (needs Node >= 22)
CONFORMANCE_NEXT_VERSION="0.2.0-alpha.12" # the same, next line: auth/authorization-server-migration
NODE22_VERSION="22.23.3"                # npm package `node` -> a Node 22 binary
SDK_VERSION="1.32.2"                    # @modelcontextprotocol/sdk (conformance driver)
MCP_REMOTE_VERSION="0.15.1"             # mcp-remote (Node reference proxy / stand-in)
FASTMCP_MCP_VERSION="1.30.0"            # PyPI mcp (FastMCP lives in mcp<2; 2.x renamed it MCPServer)
VERDACCIO_VERSION="6.10.4"              # a local npm registry for the install tests (runs on Node 22)
MCPB_VERSION="2.1.2"                    # @anthropic-ai/mcpb: validates and packs the .mcpb bundle
MATURIN_VERSION="1.16.0"                # PyPI maturin: builds the wheel (in the same venv)
UV_VERSION="0.13.9"                     # PyPI uv: its uvx runs the built wheel as users do

PKGS=(
  "@modelcontextprotocol/server-everything@$SERVER_EVERYTHING_VERSION"
  "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION"
  "conformance-next@npm:@modelcontextprotocol/conformance@$CONFORMANCE_NEXT_VERSION"
  "node@$NODE22_VERSION"
  "@modelcontextprotocol/sdk@$SDK_VERSION"
  "mcp-remote@$MCP_REMOTE_VERSION"
  "verdaccio@$VERDACCIO_VERSION"
  "@anthropic-ai/mcpb@$MCPB_VERSION"
)

ENV_ONLY=0
[[ "${1:-}" == "--env" ]] && ENV_ONLY=1
log() { if [[ $ENV_ONLY == 0 ]]; then echo "$@"; else echo "$@" >&2; fi; }

NM="$PREFIX/node_modules"
NODE22="$NM/node/bin/node"

installed_version() { # $1 = package name; prints version or nothing
  local pj="$NM/$1/package.json"
  [[ -f "$pj" ]] || return 0
  node -e 'process.stdout.write(String(require(process.argv[1]).version||""))' "$pj" 2>/dev/null || true
}

node22_ok() {
  [[ -x "$NODE22" ]] && [[ "$("$NODE22" --version 2>/dev/null)" == "v$NODE22_VERSION" ]]
}

need_install() {
  local spec name want
  for spec in "${PKGS[@]}"; do
    name="${spec%@*}"; name="${name%%@npm:*}"; want="${spec##*@}"
    [[ "$(installed_version "$name")" == "$want" ]] || { log "setup: $name is not at $want"; return 0; }
  done
  node22_ok || { log "setup: Node $NODE22_VERSION binary missing"; return 0; }
  return 1
}

if need_install; then
  mkdir -p "$PREFIX"
  # A private package.json keeps npm from walking up to the repo.
  [[ -f "$PREFIX/package.json" ]] || echo '{"name":"mcp-remote-interop","private":true}' > "$PREFIX/package.json"
  log "setup: npm install --prefix $PREFIX ${PKGS[*]}"
  # EBADENGINE warnings (packages asking for Node >= 22 while npm runs on 20) are expected.
  npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact --loglevel=error "${PKGS[@]}" >&2
  # The `node` package fetches its platform binary in a preinstall script; if
  # scripts were disabled it is missing, so install the platform package directly.
  if ! node22_ok; then
    plat="node-$(node -p process.platform)-$(node -p process.arch)"
    log "setup: node preinstall did not provide a binary; installing $plat@$NODE22_VERSION"
    npm install --prefix "$PREFIX" --no-audit --no-fund --no-save --loglevel=error "$plat@$NODE22_VERSION" >&2
    mkdir -p "$NM/node/bin"
    ln -f "$NM/$plat/bin/node" "$NODE22"
  fi
  need_install && { echo "setup: install incomplete" >&2; exit 1; }
else
  log "setup: already installed (nothing to do)"
fi

# ---- Python venv with FastMCP (PyPI mcp) ------------------------------------
VENV="$PREFIX/venv"
VENV_PY="$VENV/bin/python"
FASTMCP_CONSTRAINTS="$HERE/fastmcp-constraints.txt"

venv_version() { # $1 = distribution; prints its version in the venv, or nothing
  [[ -x "$VENV_PY" ]] || return 0
  "$VENV_PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]), end="")' "$1" 2>/dev/null || true
}
venv_mcp_version() { venv_version mcp; }

if [[ "${INTEROP_SKIP_PYTHON:-0}" == "1" ]]; then
  log "setup: INTEROP_SKIP_PYTHON=1: no Python venv"
elif [[ "$(venv_mcp_version)" == "$FASTMCP_MCP_VERSION" && "$(venv_version maturin)" == "$MATURIN_VERSION" && "$(venv_version uv)" == "$UV_VERSION" ]]; then
  log "setup: venv $VENV already has mcp $FASTMCP_MCP_VERSION, maturin $MATURIN_VERSION and uv $UV_VERSION (nothing to do)"
else
  PY="${INTEROP_PYTHON:-python3}"
  command -v "$PY" >/dev/null || { echo "setup: $PY not found (needed for the FastMCP venv; INTEROP_SKIP_PYTHON=1 skips it)" >&2; exit 1; }
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || { echo "setup: $PY is $("$PY" --version 2>&1); mcp needs >= 3.10" >&2; exit 1; }
  if [[ -e "$VENV" ]] && ! "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
    log "setup: $VENV is broken; recreating it"
    rm -rf "$VENV"
  fi
  if [[ ! -x "$VENV_PY" ]]; then
    log "setup: $PY -m venv $VENV ($("$PY" --version 2>&1))"
    mkdir -p "$PREFIX"
    "$PY" -m venv "$VENV" >&2
  fi
  log "setup: pip install mcp==$FASTMCP_MCP_VERSION into $VENV (was: $(venv_mcp_version || true))"
  "$VENV_PY" -m pip install --disable-pip-version-check --no-input --quiet \
    -c "$FASTMCP_CONSTRAINTS" "mcp==$FASTMCP_MCP_VERSION" "maturin==$MATURIN_VERSION" "uv==$UV_VERSION" >&2
  [[ "$(venv_mcp_version)" == "$FASTMCP_MCP_VERSION" ]] || { echo "setup: mcp $FASTMCP_MCP_VERSION not importable in $VENV" >&2; exit 1; }
  [[ "$(venv_version maturin)" == "$MATURIN_VERSION" ]] || { echo "setup: maturin $MATURIN_VERSION not in $VENV" >&2; exit 1; }
  [[ "$(venv_version uv)" == "$UV_VERSION" ]] || { echo "setup: uv $UV_VERSION not in $VENV" >&2; exit 1; }
  log "setup: venv ready: mcp $(venv_mcp_version)"
fi

SE_JS="$NM/@modelcontextprotocol/server-everything/dist/index.js"
CONF_JS="$NM/@modelcontextprotocol/conformance/dist/index.js"
CONF_NEXT_JS="$NM/conformance-next/dist/index.js"
MCP_REMOTE_JS="$NM/mcp-remote/dist/proxy.js"

if [[ $ENV_ONLY == 1 ]]; then
  echo "INTEROP_PREFIX=$PREFIX"
  echo "NODE22=$NODE22"
  echo "SERVER_EVERYTHING_JS=$SE_JS"
  echo "CONFORMANCE_JS=$CONF_JS"
  echo "CONFORMANCE_NEXT_JS=$CONF_NEXT_JS"
  echo "MCP_REMOTE_NODE=$NM/.bin/mcp-remote"
  echo "FASTMCP_PYTHON=$VENV_PY"
  echo "FASTMCP_SERVER=$HERE/fastmcp_server.py"
  echo "VERDACCIO_JS=$NM/verdaccio/bin/verdaccio"
  echo "MCPB_JS=$NM/@anthropic-ai/mcpb/dist/cli/cli.js"
  echo "MATURIN=$VENV/bin/maturin"
  echo "UVX=$VENV/bin/uvx"
  echo "SDK_OAUTH_EXAMPLE_JS=$NM/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js"
else
  cat <<EOF
interop tooling in $PREFIX
  node 22 ($("$NODE22" --version)):  $NODE22
  server-everything $SERVER_EVERYTHING_VERSION: $SE_JS
      start: PORT=<port> node $SE_JS streamableHttp   -> http://127.0.0.1:<port>/mcp
  conformance $CONFORMANCE_VERSION:        $NODE22 $CONF_JS --help
  conformance $CONFORMANCE_NEXT_VERSION: $NODE22 $CONF_NEXT_JS --help
  sdk $SDK_VERSION:                 $NM/@modelcontextprotocol/sdk
  mcp-remote $MCP_REMOTE_VERSION (Node reference): $NM/.bin/mcp-remote  ($MCP_REMOTE_JS)
      e.g. MCP_REMOTE_BIN=$NM/.bin/mcp-remote
      server-everything legacy SSE: PORT=<port> node $SE_JS sse   -> http://127.0.0.1:<port>/sse
  sdk example with OAuth: $HERE/sdk-oauth-server.sh [--strict]
      -> http://localhost:<MCP_PORT>/mcp + demo AS http://localhost:<MCP_AUTH_PORT>
  FastMCP (PyPI mcp $(venv_mcp_version || true)): $VENV_PY
      start: $VENV_PY $HERE/fastmcp_server.py <port>   -> http://127.0.0.1:<port>/sse
EOF
fi
