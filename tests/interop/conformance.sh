#!/usr/bin/env bash
# Run @modelcontextprotocol/conformance client scenarios, one at a time, under
# Node 22, against the stdio proxy under test driven by an SDK-based host.
#
#   tests/interop/conformance.sh [SCENARIO...]     (default: initialize tools_call sse-retry)
#
# Env:
#   MCP_REMOTE_BIN     proxy under test (default: $REPO/target/debug/mcp-remote)
#   MCP_REMOTE_ARGS    extra proxy args, space separated
#   CONFORMANCE_OUT    results dir (default: a fresh /tmp/mcp-conformance.XXXXXX)
#   CONFORMANCE_TIMEOUT_MS  per-scenario client timeout given to the runner (default 30000)
#   CONFORMANCE_LABEL  prefix of the final total line (default "conformance";
#                      conformance-auth.sh sets "conformance-auth")
#   CONFORMANCE_SPEC   run every scenario with the next conformance line
#                      (0.2.0-alpha) at this revision, e.g. 2026-07-28
#
# auth/* scenarios: the driver gives the proxy the flags and environment they
# need (see conformance-driver.mjs and AUTH-SCENARIOS.md), with BROWSER set to
# browser.sh. Each scenario's shim log goes to <results>/<scenario>/browser.log
# (one URL per browser open) and browser-trace.log; when the shim ran, the
# scenario line ends with browser=<opens>.
#
# A scenario passes only if the runner exits 0 AND its checks.json has at
# least one SUCCESS check AND no FAILURE/WARNING check (the `initialize`
# scenario "passes" with 0 checks when nothing ever connects). Exits 0 only
# if every scenario passed. One summary line per scenario, then a total.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

eval "$("$HERE/setup.sh" --env)" || { echo "conformance: setup failed" >&2; exit 2; }

PROXY="${MCP_REMOTE_BIN:-$REPO/target/debug/mcp-remote}"
if [[ ! -x "$PROXY" ]]; then
  echo "conformance: proxy '$PROXY' is not executable (cargo build, or set MCP_REMOTE_BIN)" >&2
  exit 2
fi
PROXY="$(cd "$(dirname "$PROXY")" && pwd)/$(basename "$PROXY")"   # absolute

# The runner split(' ')s --command, so the wrapper path must not contain spaces.
CLIENT_CMD="$HERE/conformance-client.sh"
if [[ "$CLIENT_CMD" == *" "* ]]; then
  SHIM_DIR="$(mktemp -d /tmp/mcp-conformance-shim.XXXXXX)"
  ln -s "$CLIENT_CMD" "$SHIM_DIR/client.sh"
  CLIENT_CMD="$SHIM_DIR/client.sh"
fi

if [[ $# -gt 0 ]]; then SCENARIOS=("$@"); else SCENARIOS=(initialize tools_call sse-retry); fi
OUT="${CONFORMANCE_OUT:-$(mktemp -d /tmp/mcp-conformance.XXXXXX)}"
mkdir -p "$OUT"
TIMEOUT_MS="${CONFORMANCE_TIMEOUT_MS:-30000}"

export MCP_REMOTE_BIN="$PROXY" NODE="$NODE22" INTEROP_PREFIX

SUITE_JS="$CONFORMANCE_JS"; [[ -n "${CONFORMANCE_SPEC:-}" ]] && SUITE_JS="$CONFORMANCE_NEXT_JS"
echo "conformance $("$NODE22" "$SUITE_JS" --version)${CONFORMANCE_SPEC:+ at $CONFORMANCE_SPEC} on node $("$NODE22" --version); proxy: $PROXY; results: $OUT"

# Summarise one scenario's checks.json: prints "success fail warn info total" then
# one line per FAILURE/WARNING check.
summarise() {
  "$NODE22" -e '
    const fs = require("fs");
    const files = process.argv.slice(1);
    const checks = files.flatMap((f) => JSON.parse(fs.readFileSync(f, "utf8")));
    const n = (s) => checks.filter((c) => c.status === s).length;
    console.log([n("SUCCESS"), n("FAILURE"), n("WARNING"), n("INFO"), checks.length].join(" "));
    for (const c of checks) if (c.status === "FAILURE" || c.status === "WARNING")
      console.log(`    ${c.status} ${c.id}: ${c.errorMessage ?? c.details?.message ?? c.description ?? ""}` +
        (c.details && !c.errorMessage && !c.details.message ? ` ${JSON.stringify(c.details).slice(0, 240)}` : ""));
  ' "$@"
}

pass=0; fail=0
for s in "${SCENARIOS[@]}"; do
  sdir="$OUT/${s//\//_}"
  rm -rf "$sdir"; mkdir -p "$sdir"
  # For the headless browser shim (auth/* scenarios): one log per scenario.
  export MCP_BROWSER_LOG="$sdir/browser.log" MCP_BROWSER_TRACE="$sdir/browser-trace.log"
  t0=$(date +%s%N)
  # Hard bound well above the runner's own client timeout.
  # Scenarios only the next conformance line has run on it, at the protocol revision
  # the proxy speaks today (2025-11-25; they are tagged for 2026-07-28, hence --force).
  runner=("$CONFORMANCE_JS") pinned=()
  case "$s" in
    auth/authorization-server-migration)
      runner=("$CONFORMANCE_NEXT_JS") pinned=(--spec-version 2025-11-25 --force) ;;
    # An extension scenario of the next line, run at the revision it defaults to.
    auth/enterprise-managed-authorization)
      runner=("$CONFORMANCE_NEXT_JS") pinned=(--spec-version 2025-11-25 --force) ;;
  esac
  # CONFORMANCE_SPEC=2026-07-28: the next conformance line, every scenario at that revision.
  if [[ -n "${CONFORMANCE_SPEC:-}" ]]; then
    runner=("$CONFORMANCE_NEXT_JS") pinned=(--spec-version "$CONFORMANCE_SPEC" --force)
  fi
  timeout --kill-after=5 $(( TIMEOUT_MS / 1000 + 60 )) \
    "$NODE22" -r "$HERE/loopback-only.cjs" "${runner[@]}" client \
      --command "$CLIENT_CMD" --scenario "$s" --timeout "$TIMEOUT_MS" -o "$sdir" "${pinned[@]}" \
      >"$sdir/runner.stdout.txt" 2>"$sdir/runner.stderr.txt"
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 )); secs="$((ms / 1000)).$(( (ms % 1000) / 100 ))"
  mapfile -t files < <(find "$sdir" -name checks.json | sort)
  if [[ ${#files[@]} -eq 0 ]]; then
    read -r ok bad warn info total <<<"0 0 0 0 0"; details="    (no checks.json written)"
  else
    summary="$(summarise "${files[@]}")"
    read -r ok bad warn info total <<<"$(head -1 <<<"$summary")"
    details="$(tail -n +2 <<<"$summary")"
  fi
  if [[ $rc -eq 0 && $bad -eq 0 && $warn -eq 0 && $ok -gt 0 ]]; then
    verdict=PASS; pass=$((pass + 1))
  else
    verdict=FAIL; fail=$((fail + 1))
    [[ $ok -eq 0 && $bad -eq 0 ]] && details="${details:+$details$'\n'}    no SUCCESS check recorded (did the client connect?)"
    [[ $rc -eq 124 || $rc -eq 137 ]] && details="${details:+$details$'\n'}    runner killed by timeout"
    derr="$(grep -h -m1 -E '^\[driver\] (error|timed out)' "$sdir"/*/stderr.txt 2>/dev/null | head -1 | cut -c1-200)"
    [[ -n "$derr" ]] && details="${details:+$details$'\n'}    $derr"
  fi
  line="$(printf '%-4s %-40s success=%s failure=%s warning=%s info=%s rc=%s %ss' "$verdict" "$s" "$ok" "$bad" "$warn" "$info" "$rc" "$secs")"
  [[ -f "$sdir/browser.log" ]] && line="$line browser=$(wc -l <"$sdir/browser.log")"
  if [[ $verdict == FAIL && -s "$sdir/browser-trace.log" ]]; then
    details="${details:+$details$'\n'}$(sed 's/^/    browser: /' "$sdir/browser-trace.log" | cut -c1-400)"
  fi
  echo "$line"
  [[ -n "$details" && $verdict == FAIL ]] && echo "$details" && echo "    logs: $sdir"
done
echo "${CONFORMANCE_LABEL:-conformance}: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
