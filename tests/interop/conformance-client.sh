#!/usr/bin/env bash
# The --command given to `conformance client`: the runner splits --command on
# spaces and appends the mock server URL as the last argument, so this wrapper
# takes everything as-is and starts the SDK-based driver, which spawns
# "$MCP_REMOTE_BIN <url>". NODE (default: node) runs the driver.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${NODE:-node}" "$HERE/conformance-driver.mjs" "$@"
