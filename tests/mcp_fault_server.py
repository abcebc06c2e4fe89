"""An MCP server over stdio, written with the official SDK, for runner's MCP tests (issue 22): the faults a real
server can have, each a tool or a start-up flag.

Flags: ``--pids FILE`` appends this process's PID to FILE at start (tests check by PID that none is left);
``--exit-at-start`` says why on stderr and exits 3 before reading anything; ``--silent`` never answers (it reads
stdin and drops it); ``--garbage`` prints a line that is not JSON-RPC on stdout before serving; ``--die-after-start``
with a FILE: the first process that finds FILE missing creates it and serves; the next ones exit at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context

app = MCPServer("fault")


@app.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@app.tool()
async def slow(seconds: float) -> str:
    """Answer after some seconds."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@app.tool()
async def wait_for(path: str) -> str:
    """Answer once the file at path exists (a test's signal), at most 30 s."""
    for _ in range(3000):
        if await asyncio.to_thread(os.path.exists, path):
            return "released"
        await asyncio.sleep(0.01)
    return "never released"


@app.tool()
def boom() -> str:
    """Raise."""
    raise ValueError("the boom tool always fails")


@app.tool()
def big(megabytes: int) -> str:
    """A result of that many megabytes."""
    return "x" * (megabytes << 20)


@app.tool()
def die() -> str:
    """Write a last word on stderr and exit in the middle of the call."""
    print("fault server: dying in the middle of a call", file=sys.stderr, flush=True)
    os._exit(7)


@app.tool()
def env() -> str:
    """The names of this process's environment variables, as JSON."""
    return json.dumps(sorted(os.environ))


@app.tool()
def garbage() -> str:
    """Print a line that is not JSON-RPC on stdout, then answer."""
    os.write(1, b"this is not json-rpc\n")
    return "answered after garbage"


@app.tool()
def trace(ctx: Context) -> str:
    """The W3C traceparent the request's _meta carried, or 'none'."""
    meta = ctx.request_context.meta or {}
    return str(meta.get("traceparent", "none"))


def main(argv: list[str]) -> None:
    if "--pids" in argv:
        with open(argv[argv.index("--pids") + 1], "a") as f:
            f.write(f"{os.getpid()}\n")
    if "--exit-at-start" in argv:
        print("fault server: cannot start, the configuration is missing", file=sys.stderr, flush=True)
        raise SystemExit(3)
    if "--silent" in argv:
        for _ in sys.stdin:
            pass
        return
    if "--die-after-start" in argv:
        marker = argv[argv.index("--die-after-start") + 1]
        if os.path.exists(marker):
            print("fault server: exits again at start", file=sys.stderr, flush=True)
            raise SystemExit(4)
        open(marker, "w").close()
    if "--garbage" in argv:
        os.write(1, b"garbage before the first message\n")
    app.run()


if __name__ == "__main__":
    main(sys.argv[1:])
