"""``runner serve --mcp``: what sharing one set of providers between calls saves (issue 22 item 4).

A served workflow's calls run through ``runner.arun`` with the providers the server opened once
(``runner/commands/mcp_tools.py``); without them each call opens its models' providers (an HTTP client and its
pool) and closes them at its end. Both are measured here in one process, against one loopback
OpenAI-compatible server in a process of its own with a fixed latency: batches of calls, one at a time and
``--concurrency`` at once, the two ways interleaved round by round; the medians and their ratio are printed.

    python bench/serve_providers.py [--latency 0.05] [--calls 20] [--concurrency 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runner  # noqa: E402
from bench.http_fanout import start_server  # noqa: E402
from runner.engine.opening import open_providers  # noqa: E402
from runner.plan.compile import compile_workflow  # noqa: E402

WORKFLOW = """\
version: 1
name: ask
inputs:
  question: {type: string}
models:
  m: {provider: openai, model: bench, base_url: "URL", stream: false}
agents:
  a: {model: m, sys_prompt: "Answer."}
stages:
  - {id: answer, agent: a, input: "{{ inputs.question }}"}
"""


async def measure(url: str, calls: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    (folder / "ask.yaml").write_text(WORKFLOW.replace("URL", url), encoding="utf-8")
    wf = runner.load(folder / "ask.yaml")
    shared = open_providers(compile_workflow(wf))
    times: dict[str, list[float]] = {
        f"{way}, {c} at once": [] for way in ("shared", "per call") for c in (1, concurrency)
    }

    async def batch(providers: object, at_once: int) -> float:
        slots = asyncio.Semaphore(at_once)

        async def one(i: int) -> None:
            async with slots:
                result = await runner.arun(wf, {"question": f"q{i}"}, providers=providers, run_dir=folder / "runs")  # type: ignore[arg-type]
                assert result.ok, result.error

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return time.perf_counter() - start

    try:
        await batch(shared, concurrency)  # warm-up: imports, the first connections
        await batch(None, concurrency)
        for _ in range(rounds):
            for at_once in (1, concurrency):
                times[f"shared, {at_once} at once"].append(await batch(shared, at_once))
                times[f"per call, {at_once} at once"].append(await batch(None, at_once))
    finally:
        await asyncio.gather(*(p.aclose() for p in shared.values()))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    proc, url = start_server(args.latency)
    try:
        times = asyncio.run(measure(url, args.calls, args.concurrency, args.rounds))
    finally:
        proc.kill()
        proc.wait()
    print(
        f"{args.calls} calls of one agent stage, server latency {args.latency * 1000:.0f} ms; medians of {args.rounds}"
    )
    for at_once in (1, args.concurrency):
        shared = statistics.median(times[f"shared, {at_once} at once"])
        fresh = statistics.median(times[f"per call, {at_once} at once"])
        print(
            f"  {at_once:>3} at once: shared providers {shared * 1000:7.1f} ms, "
            f"a provider per call {fresh * 1000:7.1f} ms (x{fresh / shared:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
