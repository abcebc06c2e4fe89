"""A tool call through runner against the same call made directly with the MCP SDK's client (issue 22's bar: at
most 1.1x), in the same run, on the same loop.

    python bench/mcp_overhead.py [--rounds 7] [--calls 200] [--parallel 1]

Two processes of the same stdio server (tests/mcp_fault_server.py, its ``echo`` tool): one opened by runner
(:class:`runner.mcp.server.McpServer`, its tool called through :class:`runner.tools.ToolRunner` as an agent's tool
call is: JSON arguments parsed, the per-call timeout, the concurrency bound, the result's text), the other by the
SDK's own ``stdio_client`` and ``ClientSession``. Each round makes ``--calls`` calls on each (``--parallel`` at a
time), the two interleaved, alternating which goes first; reported: the median over rounds of the time per call,
and the ratio runner / SDK. Needs ``pip install 'runner[mcp]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = ROOT / "tests" / "mcp_fault_server.py"


async def timed(call: Callable[[], Awaitable[object]], calls: int, parallel: int) -> float:
    """Seconds per call, ``parallel`` in flight."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(parallel):
            tg.create_task(worker())
    return (time.perf_counter() - started) / calls


async def main(rounds: int, calls: int, parallel: int) -> dict[str, object]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from runner.config.mcp import McpServerSpec
    from runner.config.source import Loc
    from runner.mcp.server import McpServer
    from runner.tools import Tool, ToolRunner

    spec = McpServerSpec(name="bench", loc=Loc("bench", 1, 1), command=sys.executable, args=(str(SERVER),))
    with tempfile.TemporaryDirectory() as logs:
        server = McpServer(spec, ROOT, Path(logs) / "bench.stderr.log")
        await server.start()
        tool = server.tools["echo"]
        runner_tools = ToolRunner(
            {
                "mcp.bench.echo": Tool(
                    "echo",
                    print,
                    True,
                    tool.description or "",
                    dict(tool.input_schema),
                    spec.timeout,
                    lambda args, node: server.call("echo", args, node),
                )
            }
        )
        params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
        try:
            async with (
                stdio_client(params, errlog=open(os.devnull, "w")) as (read, write),  # noqa: ASYNC230, SIM115
                ClientSession(read, write) as session,
            ):
                await session.initialize()

                async def through_runner() -> object:
                    text, ok = await runner_tools.run("mcp.bench.echo", '{"text": "hello"}')
                    assert ok and text == "hello", text
                    return text

                async def direct() -> object:
                    result = await session.call_tool("echo", {"text": "hello"})
                    assert result.content[0].text == "hello"  # type: ignore[union-attr]
                    return result

                for call in (through_runner, direct):  # warm both paths
                    await timed(call, 20, parallel)
                runner_s: list[float] = []
                sdk_s: list[float] = []
                for i in range(rounds):
                    order = [(through_runner, runner_s), (direct, sdk_s)]
                    for call, into in order if i % 2 == 0 else order[::-1]:
                        into.append(await timed(call, calls, parallel))
        finally:
            await server.aclose()
    r, d = statistics.median(runner_s), statistics.median(sdk_s)
    return {
        "calls_per_round": calls,
        "parallel": parallel,
        "rounds": rounds,
        "runner_us_per_call": round(r * 1e6, 1),
        "sdk_us_per_call": round(d * 1e6, 1),
        "ratio": round(r / d, 3),
        "load": os.getloadavg()[0],
    }


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(main(args.rounds, args.calls, args.parallel)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
