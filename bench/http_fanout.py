"""Fan-out over HTTP: the runner's OpenAI provider against plain httpx and raw aiohttp, in one run.

A loopback OpenAI-compatible server with a fixed latency runs in a separate process (so its work does
not share the clients' event loop); each client sends N concurrent chat requests (JSON, then streamed)
and the wall time of the whole batch is measured, best of a few rounds after one warm-up round. Every
client gets the same connection limit (``--max-connections``, default 100: the default of httpx,
aiohttp and the runner's ``pool.max_connections``).

    python bench/http_fanout.py [--latency 0.05] [--levels 1,10,100,1000] [--rounds 3]

Prints a table with each client's time and its ratio to raw aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.config.openai import parse_openai_model  # noqa: E402
from runner.providers.base import CallContext  # noqa: E402
from runner.providers.openai import OpenAIChatProvider  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say something short."}]


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "oai_server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


Batch = Callable[[int], Awaitable[None]]


async def make_aiohttp(url: str, stream: bool, limit: int) -> tuple[Batch, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
    body = json.dumps(
        {
            "model": "bench",
            "messages": MESSAGES,
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def one() -> None:
        async with session.post(f"{url}/chat/completions", data=body, headers=headers) as resp:
            if stream:
                async for _ in resp.content.iter_any():
                    pass
            else:
                json.loads(await resp.read())

    async def batch(n: int) -> None:
        await asyncio.gather(*(one() for _ in range(n)))

    return batch, session.close


async def make_httpx(url: str, stream: bool, limit: int) -> tuple[Batch, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit), timeout=120)
    body = json.dumps(
        {
            "model": "bench",
            "messages": MESSAGES,
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def one() -> None:
        if stream:
            async with client.stream("POST", f"{url}/chat/completions", content=body, headers=headers) as resp:
                async for _ in resp.aiter_bytes():
                    pass
        else:
            resp = await client.post(f"{url}/chat/completions", content=body, headers=headers)
            json.loads(resp.content)

    async def batch(n: int) -> None:
        await asyncio.gather(*(one() for _ in range(n)))

    return batch, client.aclose


async def make_runner(
    url: str, stream: bool, limit: int, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[Batch, Callable[[], Awaitable[None]]]:
    os.environ["BENCH_KEY"] = "bench"
    config = parse_openai_model(
        {
            "provider": "openai",
            "base_url": url,
            "model": "bench",
            "api_key_env": "BENCH_KEY",
            "stream": stream,
            "pool": {"max_connections": limit},
            "timeout": {"read": 120, "pool": 120},
        }
    )
    provider = OpenAIChatProvider("bench", config, transport=transport)
    ctx = CallContext(node_id="bench", agent="bench")

    async def batch(n: int) -> None:
        await asyncio.gather(*(provider.chat(MESSAGES, ctx) for _ in range(n)))

    return batch, provider.aclose


WORKFLOW = """
version: 1
name: http-fanout-{n}
models:
  bench:
    provider: openai
    base_url: "{url}"
    model: bench
    api_key_env: BENCH_KEY
    stream: {stream}
    pool: {{max_connections: {limit}}}
    timeout: {{read: 120, pool: 120}}
agents:
  worker: {{model: bench, sys_prompt: "You are worker {{{{ vars.item }}}}."}}
stages:
  - id: fan
    input: "Say something short about {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range({n}) | list }}}}", agent: worker}}
"""


async def make_workflow(url: str, stream: bool, limit: int) -> tuple[Batch, Callable[[], Awaitable[None]]]:
    """The whole engine: a workflow's for_each fan-out of N agent stages (templates rendered, events recorded,
    outputs collected), sharing one warm provider across batches as the raw clients share their pools."""
    from runner.engine.execute import Engine  # noqa: PLC0415
    from runner.events import Recorder  # noqa: PLC0415
    from runner.plan.compile import compile_workflow  # noqa: PLC0415
    from runner.validate.check import load_workflow  # noqa: PLC0415

    os.environ["BENCH_KEY"] = "bench"
    plans: dict[int, Any] = {}
    providers: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="runner-bench-"))

    def plan_for(n: int) -> Any:
        if n not in plans:
            path = folder / f"fan-{n}.yaml"
            path.write_text(WORKFLOW.format(n=n, url=url, stream=str(stream).lower(), limit=limit))
            plans[n] = compile_workflow(load_workflow(path))
        return plans[n]

    async def batch(n: int) -> None:
        plan = plan_for(n)
        if not providers:
            providers["bench"] = OpenAIChatProvider("bench", plan.workflow.models["bench"].config)
        outputs = await Engine(plan, {}, providers, Recorder(), run_info={"id": "bench", "name": "bench"}).run()
        assert len(outputs) == n

    async def close() -> None:
        for provider in providers.values():
            await provider.aclose()
        shutil.rmtree(folder, ignore_errors=True)

    return batch, close


async def make_runner_stock_httpx(url: str, stream: bool, limit: int) -> tuple[Batch, Callable[[], Awaitable[None]]]:
    """The provider on httpx's own transport (httpcore), passed in as a program would pass it."""
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    return await make_runner(url, stream, limit, httpx.AsyncHTTPTransport(limits=limits))


CLIENTS: dict[str, Callable[[str, bool, int], Awaitable[tuple[Batch, Callable[[], Awaitable[None]]]]]] = {
    "aiohttp (raw)": make_aiohttp,
    "httpx (plain)": make_httpx,
    "runner provider": make_runner,
    "runner workflow": make_workflow,
}


async def measure(name: str, url: str, stream: bool, n: int, limit: int, rounds: int) -> float:
    batch, close = await CLIENTS[name](url, stream, limit)
    try:
        await batch(n)  # warm-up: opens the connections
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await batch(n)
            times.append(time.perf_counter() - start)
        return min(times)
    finally:
        await close()


def markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    """The table for the README: milliseconds, with the ratio to raw aiohttp."""
    lines = ["| mode | concurrent | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for row in rows:
        base = row["aiohttp (raw)"]
        cells = [f"{row[name] * 1000:.0f} ms ({row[name] / base:.2f}x)" for name in names]
        lines.append(f"| {row['mode']} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace, url: str) -> list[dict[str, Any]]:
    rows = []
    names = list(CLIENTS)
    for stream in (False, True):
        for n in args.levels:
            row: dict[str, Any] = {"mode": "stream" if stream else "json", "n": n}
            for name in names:
                rounds = 1 if (name in ("httpx (plain)", "runner on httpcore") and n >= 1000) else args.rounds
                row[name] = await measure(name, url, stream, n, args.max_connections, rounds)
            rows.append(row)
            print(format_row(row, names), flush=True)
    return rows


def format_row(row: dict[str, Any], names: list[str]) -> str:
    base = row["aiohttp (raw)"]
    cells = [f"{row['mode']:<6}", f"{row['n']:>5}"]
    for name in names:
        cells.append(f"{row[name] * 1000:>8.1f} ms ({row[name] / base:>4.2f}x)")
    return " | ".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--levels", default="1,10,100,1000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument(
        "--stock-httpx",
        action="store_true",
        help="also measure the runner provider given httpx's own transport (httpcore) through transport=",
    )
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    if args.stock_httpx:
        CLIENTS["runner on httpcore"] = make_runner_stock_httpx
    try:
        import uvloop
    except ImportError:
        uvloop = None
    proc, url = start_server(args.latency)
    try:
        names = list(CLIENTS)
        print(
            f"latency {args.latency * 1000:g} ms, max connections {args.max_connections}, "
            f"best of {args.rounds} rounds after a warm-up; ratio to raw aiohttp in brackets"
        )
        print(" | ".join(["mode  ", "    n"] + [f"{name:>20}" for name in names]))
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop) if uvloop else asyncio.Runner()
        with runner:
            rows = runner.run(main_async(args, url))
        if args.markdown:
            print()
            print(markdown(rows, names))
    finally:
        proc.kill()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
