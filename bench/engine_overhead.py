"""Engine overhead: fan-outs of scripted agents with a fixed latency, and a chain, against the ideal.

Each case runs in its own process (so peak memory is that case's alone) through the same path as
``runner run``: load the YAML, validate, compile, run on uvloop. The ratio is the run's wall time over
the ideal (the scripted latency times the critical path's length).

The floor is measured in the same run: on the same loop (uvloop), N bare tasks in an ``asyncio.TaskGroup``
that only wait the same latency on shared timers, and nothing else. No engine that runs each branch as a
task can be faster; the bar (issue 14) is the fan-out's wall time over the floor's for the same N, at most
1.15x at 1,000 and 10,000 branches. Cases are interleaved over rounds (one process per case and round), so a
slow spell of a shared machine weighs on every case alike; figures are medians over every run of every round.
Run: ``python bench/engine_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LATENCY_MS = 50
BARS = {1000: 1.15, 10000: 1.15}
"""Issue 14's bars: the median fan-out wall time over the median floor wall time of the same N, at most this,
under MAX_PEAK_MB of peak memory."""
MAX_PEAK_MB = 300

FANOUT = """
version: 1
name: fanout-{n}
models:
  m:
    provider: scripted
    reply: "done {{{{ vars.item }}}}"
    latency: {{first_token_ms: {latency}}}
agents:
  worker: {{model: m, sys_prompt: "You are worker {{{{ vars.item }}}}."}}
stages:
  - id: fan
    input: "Work on item {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range({n}) | list }}}}", agent: worker}}
"""

CHAIN = """
version: 1
name: chain-{n}
models:
  m:
    provider: scripted
    reply: "step after: {{{{ input | truncate(40) }}}}"
    latency: {{first_token_ms: {latency}}}
agents:
  worker: {{model: m, sys_prompt: "You are a careful worker."}}
stages:
{stages}
"""


def floor_case(n: int, repeat: int) -> dict[str, Any]:
    """N tasks in a TaskGroup, each awaiting a future that a shared timer (one per millisecond) resolves."""
    import asyncio

    from runner.engine import loop as loops

    latency = LATENCY_MS / 1000

    async def fanout() -> None:
        loop = asyncio.get_running_loop()
        buckets: dict[int, list[asyncio.Future[None]]] = {}

        def fire(tick: int) -> None:
            for waiter in buckets.pop(tick):
                waiter.set_result(None)

        async def branch(i: int) -> int:
            tick = math.ceil((time.monotonic() + latency) * 1000)  # as the scripted provider: never early
            waiter = loop.create_future()
            bucket = buckets.get(tick)
            if bucket is None:
                bucket = buckets[tick] = []
                loop.call_at(tick / 1000, fire, tick)
            bucket.append(waiter)
            await waiter
            return i

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(branch(i)) for i in range(n)]
        assert [t.result() for t in tasks] == list(range(n))

    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        loops.run(fanout, use_uvloop=True)
        walls.append(time.perf_counter() - t0)  # like the engine's wall: loop creation and close included
    return {"walls": walls, "ideal_s": latency, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def provider_floor_case(n: int, repeat: int) -> dict[str, Any]:
    """N tasks in a TaskGroup, each awaiting the scripted provider's reply to the same messages a fan-out branch
    sends (built beforehand): the model's simulated work with no engine around it."""
    import asyncio

    from runner.engine import loop as loops
    from runner.plan.compile import compile_workflow
    from runner.providers.base import CallContext
    from runner.providers.scripted import ScriptedProvider
    from runner.validate.check import load_workflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(FANOUT.format(n=n, latency=LATENCY_MS))
        plan = compile_workflow(load_workflow(path))
    config = plan.workflow.models["m"].config
    calls = [
        (
            [{"role": "system", "content": f"You are worker {i}."}, {"role": "user", "content": f"Work on item {i}."}],
            CallContext(f"fan[{i}]", "worker", {"vars": {"item": i}}),
        )
        for i in range(n)
    ]

    async def fanout() -> None:
        provider = ScriptedProvider("m", config)

        async def branch(i: int) -> Any:
            messages, ctx = calls[i]
            return await provider.chat(messages, ctx)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(branch(i)) for i in range(n)]
        assert tasks[-1].result().content == f"done {n - 1}"

    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        loops.run(fanout, use_uvloop=True)
        walls.append(time.perf_counter() - t0)
    return {
        "walls": walls,
        "ideal_s": LATENCY_MS / 1000,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def one_case(kind: str, n: int, repeat: int) -> dict[str, Any]:
    if kind == "floor":
        return floor_case(n, repeat)
    if kind == "provider":
        return provider_floor_case(n, repeat)
    from runner.engine.session import run_plan
    from runner.plan.compile import compile_workflow
    from runner.validate.check import load_workflow

    if kind == "fanout":
        text = FANOUT.format(n=n, latency=LATENCY_MS)
        ideal = LATENCY_MS / 1000
    else:
        stages = "\n".join(f"  - {{id: s{i}, agent: worker}}" for i in range(n))
        text = CHAIN.format(n=n, latency=LATENCY_MS, stages=stages)
        ideal = n * LATENCY_MS / 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(text)
        plan = compile_workflow(load_workflow(path))
    walls = []
    for _ in range(repeat):
        outcome = run_plan(plan, {}, tune_gc=True)  # as runner run
        assert outcome.status == "ok", outcome.error
        walls.append(outcome.report()["run"]["wall_s"])
    return {"walls": walls, "ideal_s": ideal, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.n, args.repeat)))
        return
    sizes = (1, 10, 100, 1000, 10000)
    cases = [(kind, n) for n in sizes for kind in ("fanout", "floor", "provider")] + [("chain", 10)]
    # Rounds interleave the cases, so a slow spell of a shared machine weighs on every case alike.
    results: dict[tuple[str, int], list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for kind, n in cases:
            out = subprocess.run(
                [sys.executable, __file__, "--case", kind, "--n", str(n), "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            results[(kind, n)].append(json.loads(out.stdout))

    def walls(case: tuple[str, int]) -> list[float]:
        return [w for one in results[case] for w in one["walls"]]

    def spread(a: str, b: str, n: int) -> str:
        per_round = [
            statistics.median(x["walls"]) / statistics.median(y["walls"])
            for x, y in zip(results[(a, n)], results[(b, n)], strict=True)
        ]
        return f"{min(per_round):.2f}-{max(per_round):.2f}"

    print(
        f"engine overhead, scripted latency {LATENCY_MS} ms, Python {platform.python_version()}, medians of "
        f"{args.rounds} rounds x {args.repeat} runs, one process per case and round"
    )
    print(
        f"{'case':<14} {'ideal s':>8} {'timers s':>9} {'provider s':>10} {'wall s':>8} {'/ideal':>7} "
        f"{'/timers':>8} {'/provider':>10} {'rounds /provider':>17} {'peak MB':>8}  bar"
    )
    for n in sizes:
        fan, timers, provider = walls(("fanout", n)), walls(("floor", n)), walls(("provider", n))
        ratio = statistics.median(fan) / statistics.median(provider)
        peak = max(one["peak_mb"] for one in results[("fanout", n)])
        bar = BARS.get(n)
        verdict = ""
        if bar is not None:
            met = ratio <= bar and peak < MAX_PEAK_MB
            verdict = f"<= {bar}x, < {MAX_PEAK_MB} MB: {'met' if met else 'MISSED'}"
        ideal = results[("fanout", n)][0]["ideal_s"]
        print(
            f"{'fanout ' + str(n):<14} {ideal:>8.3f} {statistics.median(timers):>9.3f} "
            f"{statistics.median(provider):>10.3f} {statistics.median(fan):>8.3f} "
            f"{statistics.median(fan) / ideal:>7.2f} "
            f"{statistics.median(fan) / statistics.median(timers):>8.2f} {ratio:>10.2f} "
            f"{spread('fanout', 'provider', n):>17} {peak:>8.1f}  {verdict}"
        )
    chain = walls(("chain", 10))
    ideal = results[("chain", 10)][0]["ideal_s"]
    peak = max(one["peak_mb"] for one in results[("chain", 10)])
    print(
        f"{'chain 10':<14} {ideal:>8.3f} {'':>8} {statistics.median(chain):>8.3f} "
        f"{statistics.median(chain) / ideal:>7.2f} {'':>7} {'':>16} {peak:>8.1f}"
    )


if __name__ == "__main__":
    main()
