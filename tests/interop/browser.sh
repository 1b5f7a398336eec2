#!/usr/bin/env bash
# Headless "browser" for OAuth tests: called as `browser.sh <url>` (the way a
# proxy runs $BROWSER), it GETs the URL and follows redirects, so an
# authorization server that approves at once (302 to redirect_uri?code=...)
# delivers the code to the proxy's loopback callback.
#
# Used by the conformance `auth/*` scenarios (the mock AS 302s straight to the
# callback) and by the SDK example server with --oauth (its demo provider also
# 302s at once; no form, no login page).
#
# How proxies reach it:
#   * our Rust mcp-remote: BROWSER=<this file>, run with the URL as argv[1]
#     (no shell).
#   * Node mcp-remote 0.15.1: it calls the `open` package, which on Linux runs
#     its bundled xdg-open script; with no desktop detected (no
#     XDG_CURRENT_DESKTOP / DISPLAY / ... ) that script runs `$BROWSER "<url>"`.
#     So: BROWSER=<this file> and a desktop-free environment (the conformance
#     driver and the SDK OAuth test strip those variables). The path must have
#     no spaces or colons (xdg-open splits $BROWSER on ':' and word-splits it).
#
# Env:
#   MCP_BROWSER_LOG         append the URL (one line per call) to this file;
#                           the line count is the number of browser opens.
#   MCP_BROWSER_TRACE       append "<url> -> 302 <next url> -> ... <status>
#                           (final; N refused retries)", or the error, to this
#                           file (it also goes to stderr).
#   MCP_BROWSER_TIMEOUT     seconds allowed for each request (default 20).
#   MCP_BROWSER_CONNECT_WAIT  seconds to keep retrying a refused connection
#                           (default 10; see below).
#   MCP_BROWSER_BACKGROUND  1 = fetch in the background and exit 0 at once
#                           (like a real browser launcher); default: fetch in
#                           the foreground and exit when the page is loaded.
#
# Exit status: 0 once the URL was handed over (even when the page answered an
# HTTP error or could not be fetched, as with a real browser), 2 on a usage
# error, 3 when curl is missing. A non-zero status makes Node mcp-remote try
# its fallback openers (sensible-browser also runs $BROWSER): a second open.
set -u

if [[ $# -lt 1 || -z "${1:-}" ]]; then
  echo "browser.sh: usage: browser.sh <url>" >&2
  exit 2
fi
url="$1"

if [[ -n "${MCP_BROWSER_LOG:-}" ]]; then
  printf '%s\n' "$url" >>"$MCP_BROWSER_LOG"
fi

trace() {
  echo "browser.sh: $*" >&2
  if [[ -n "${MCP_BROWSER_TRACE:-}" ]]; then printf '%s\n' "$*" >>"$MCP_BROWSER_TRACE"; fi
}

timeout_s="${MCP_BROWSER_TIMEOUT:-20}"

if ! command -v curl >/dev/null 2>&1; then
  trace "$url -> curl not found on PATH; cannot open the URL"
  exit 3
fi

# Follows redirects one hop at a time (at most 10; http/https only; cookies
# kept in a private jar like a browser session). A hop whose connection is
# refused is retried every 100 ms until the deadline: Node mcp-remote opens the
# browser before its callback listener is up (a real browser takes longer than
# that to load a page). A refused connection reached no server, so retrying it
# repeats nothing: the authorization request itself is sent exactly once.
fetch() {
  local jar cur res rc code loc hops=0 refused=0 chain=""
  local deadline=$(( $(date +%s) + ${MCP_BROWSER_CONNECT_WAIT:-10} ))
  jar="$(mktemp "${TMPDIR:-/tmp}/browser-sh-jar.XXXXXX")"
  cur="$url"
  while :; do
    res="$(curl -sS --proto '=http,https' --max-time "$timeout_s" -b "$jar" -c "$jar" \
      -o /dev/null -w '%{http_code} %{redirect_url}' "$cur" 2>&1)"
    rc=$?
    if [[ $rc -eq 7 && $(date +%s) -lt $deadline ]]; then
      refused=$((refused + 1)); sleep 0.1; continue
    fi
    if [[ $rc -ne 0 ]]; then
      trace "$url ->${chain} $cur: fetch failed (curl rc=$rc, $refused refused retries): $(head -1 <<<"$res")"
      break
    fi
    code="${res%% *}"; loc="${res#* }"
    case "$code" in
      301|302|303|307|308)
        if [[ -n "$loc" && $hops -lt 10 ]]; then
          chain="$chain $code $loc ->"; cur="$loc"; hops=$((hops + 1)); continue
        fi ;;
    esac
    trace "$url ->${chain} $code (final; $refused refused retries)"
    break
  done
  rm -f "$jar"
}

if [[ "${MCP_BROWSER_BACKGROUND:-0}" == "1" ]]; then
  fetch </dev/null >/dev/null 2>&1 &
  disown 2>/dev/null || true
  exit 0
fi
fetch
exit 0
