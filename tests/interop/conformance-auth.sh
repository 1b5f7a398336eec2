#!/usr/bin/env bash
# Run the @modelcontextprotocol/conformance client auth/* scenarios, one at a
# time, against the proxy under test (conformance.sh does the work; the
# driver maps each scenario to proxy flags, and the headless browser shim
# browser.sh completes the authorization step). What each scenario checks, and
# how Node mcp-remote 0.15.1 fares: AUTH-SCENARIOS.md.
#
#   tests/interop/conformance-auth.sh [SCENARIO...]   (default: all of --list)
#   tests/interop/conformance-auth.sh --list
#
# Env: as conformance.sh (MCP_REMOTE_BIN, CONFORMANCE_OUT, CONFORMANCE_TIMEOUT_MS,
# MCP_REMOTE_ARGS), plus MCP_CONFORMANCE_BROWSER to use another browser shim.
# Prints one line per scenario and "conformance-auth: N passed, M failed";
# exits 0 only if every scenario passed (runner rc 0, >= 1 SUCCESS, no
# FAILURE/WARNING; auth/scope-retry-limit and auth/resource-mismatch let the
# client exit non-zero, so the driver's error there does not fail them).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

AUTH_SCENARIOS=(
  auth/metadata-default
  auth/metadata-var1
  auth/metadata-var2
  auth/metadata-var3
  auth/basic-cimd
  auth/scope-from-www-authenticate
  auth/scope-from-scopes-supported
  auth/scope-omitted-when-undefined
  auth/scope-step-up
  auth/scope-retry-limit
  auth/token-endpoint-auth-basic
  auth/token-endpoint-auth-post
  auth/token-endpoint-auth-none
  auth/pre-registration
  auth/2025-03-26-oauth-endpoint-fallback
  auth/2025-03-26-oauth-metadata-backcompat
  auth/resource-mismatch
  auth/offline-access-scope
  auth/offline-access-not-supported
  auth/client-credentials-basic
  auth/client-credentials-jwt
  auth/authorization-server-migration
  auth/enterprise-managed-authorization
)

if [[ "${1:-}" == "--list" ]]; then
  printf '%s\n' "${AUTH_SCENARIOS[@]}"
  exit 0
fi
if [[ $# -eq 0 ]]; then set -- "${AUTH_SCENARIOS[@]}"; fi
for s in "$@"; do
  [[ "$s" == auth/* ]] || echo "conformance-auth: warning: $s is not an auth/* scenario" >&2
done
CONFORMANCE_LABEL=conformance-auth exec "$HERE/conformance.sh" "$@"
