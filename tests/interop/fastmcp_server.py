"""A small FastMCP server (PyPI `mcp` 1.x) speaking the legacy HTTP+SSE
transport (protocol 2024-11-05 style), for the interop tests.

    .interop/venv/bin/python tests/interop/fastmcp_server.py [PORT]

The port comes from argv[1], else $FASTMCP_PORT, else 8000. It always listens
on 127.0.0.1. URLs: `GET http://127.0.0.1:<port>/sse` opens the event stream
(first event `endpoint`, data `/messages/?session_id=<hex>`); messages are
POSTed there. A POST to `/sse` answers 405 (the route is GET-only).

Ready when stderr shows `Uvicorn running on http://127.0.0.1:<port>`.

Lifetime guards (as in loopback-only.cjs): INTEROP_EXIT_ON_STDIN_EOF=1 makes
the process exit when its stdin reaches EOF; INTEROP_MAX_LIFETIME_MS=N makes
it exit after N ms.

INTEROP_SSE_PING_SECONDS=S sets the keep-alive interval of the event stream
(sse-starlette sends a comment line `: ping - <time>` every S seconds; its
default is 15). The stream's lines end in CRLF.

Features: tools echo, add, fail, slow_progress (ctx.report_progress),
log_levels (ctx.debug/info/warning/error), sample (ctx.session.create_message),
list_client_roots (ctx.session.list_roots); resource interop://static/readme;
resource template interop://greeting/{name}; prompts review, plain.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.prompts.base import AssistantMessage, UserMessage
from mcp.types import SamplingMessage, TextContent

README_TEXT = "FastMCP interop server.\nLine two — with non-ASCII ✓.\n"


def _port() -> int:
    if len(sys.argv) > 1:
        return int(sys.argv[1])
    return int(os.environ.get("FASTMCP_PORT", "8000"))


def _apply_interop_env() -> None:
    if os.environ.get("INTEROP_EXIT_ON_STDIN_EOF") == "1":

        def wait_eof() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except Exception:
                pass
            os._exit(0)

        threading.Thread(target=wait_eof, daemon=True).start()
    ping = os.environ.get("INTEROP_SSE_PING_SECONDS")
    if ping:
        from sse_starlette import EventSourceResponse

        EventSourceResponse.DEFAULT_PING_INTERVAL = float(ping)
    max_life = int(os.environ.get("INTEROP_MAX_LIFETIME_MS", "0") or 0)
    if max_life > 0:
        timer = threading.Timer(max_life / 1000.0, lambda: os._exit(0))
        timer.daemon = True
        timer.start()


mcp = FastMCP(
    "interop-fastmcp",
    instructions="Interop test server for mcp-remote.",
    host="127.0.0.1",
    port=_port(),
    log_level="INFO",
)


@mcp.tool()
def echo(message: str) -> str:
    """Echoes the message back, prefixed with 'Echo: '."""
    return f"Echo: {message}"


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
def fail(reason: str) -> str:
    """Always raises; the client sees a tool result with isError."""
    raise ValueError(f"failing on purpose: {reason}")


@mcp.tool()
async def slow_progress(steps: int, ctx: Context, delay_ms: int = 50) -> str:
    """Reports progress 1..steps (total=steps) before returning."""
    for i in range(1, steps + 1):
        await asyncio.sleep(delay_ms / 1000.0)
        await ctx.report_progress(i, steps, f"step {i} of {steps}")
    return f"completed {steps} steps"


@mcp.tool()
async def log_levels(message: str, ctx: Context) -> str:
    """Sends one notifications/message at each of debug, info, warning, error."""
    await ctx.debug(f"debug: {message}")
    await ctx.info(f"info: {message}")
    await ctx.warning(f"warning: {message}")
    await ctx.log("error", f"error: {message}", logger_name="interop.logger")
    return f"logged 4 messages for {message}"


@mcp.tool()
async def sample(prompt: str, ctx: Context, max_tokens: int = 64) -> str:
    """Asks the client to sample (sampling/createMessage) and reports the answer."""
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=max_tokens,
        system_prompt="You are an interop test.",
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, TextContent) else repr(content)
    return f"sampled[{result.model}|{result.role}]: {text}"


@mcp.tool()
async def list_client_roots(ctx: Context) -> str:
    """Asks the client for its roots (roots/list) and lists their URIs."""
    result = await ctx.session.list_roots()
    return "roots: " + ", ".join(str(r.uri) for r in result.roots)


@mcp.resource("interop://static/readme", name="readme", mime_type="text/plain")
def readme() -> str:
    """A static text resource."""
    return README_TEXT


@mcp.resource("interop://greeting/{name}", mime_type="text/plain")
def greeting(name: str) -> str:
    """A templated resource."""
    return f"Hello, {name}!"


@mcp.prompt()
def review(code: str, language: str = "rust") -> list:
    """Asks for a code review."""
    return [
        UserMessage(f"Please review this {language} code:\n{code}"),
        AssistantMessage("Sure — looking at it now."),
    ]


@mcp.prompt()
def plain() -> str:
    """A prompt without arguments."""
    return "A plain prompt without arguments."


if __name__ == "__main__":
    _apply_interop_env()
    mcp.run(transport="sse")
