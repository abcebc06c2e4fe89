"""Engine overhead: fan-outs of scripted agents with a fixed latency, and a chain, against the ideal.

Each case runs in its own process (so peak memory is that case's alone) through the same path as
``runner run``: load the YAML, validate, compile, run on uvloop. The ratio is the run's wall time over
the ideal (the scripted latency times the critical path's length).

The ``asyncio floor`` rows are the baseline measured in the same run: on the same loop (uvloop), N bare tasks
in an ``asyncio.TaskGroup`` that only wait the same latency on shared timers, and nothing else. No engine that
starts a Task per branch can be faster than that; the gap between a fan-out row and the floor row of the same
N is the engine's own work. Run: ``python bench/engine_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY_MS = 50
BARS = {("fanout", 1000): 1.2, ("fanout", 10000): 2.0}
"""Issue 2's bars: the best ratio at most this, under MAX_PEAK_MB of peak memory."""
MAX_PEAK_MB = 300
LABELS = {"floor": "asyncio floor", "strands": "strand floor"}

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


def floor_case(n: int, repeat: int, *, strands: bool = False) -> dict[str, float]:
    """N tasks in a TaskGroup (or N strands of one group, as the engine runs branches), each awaiting a
    future that a shared timer (one per millisecond) resolves."""
    import asyncio

    from runner.engine import loop as loops
    from runner.engine.strands import run_strands

    latency = LATENCY_MS / 1000

    async def fanout() -> float:
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

        t0 = time.perf_counter()
        if strands:
            results = await run_strands("floor", range(n), branch)
        else:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(branch(i)) for i in range(n)]
            results = [t.result() for t in tasks]
        assert results == list(range(n))
        return time.perf_counter() - t0

    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        loops.run(fanout, use_uvloop=True)
        walls.append(time.perf_counter() - t0)  # like the engine's wall: loop creation and close included
    best = min(walls)
    return {
        "wall_s": best,
        "median_wall_s": sorted(walls)[len(walls) // 2],
        "ideal_s": latency,
        "ratio": best / latency,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def one_case(kind: str, n: int, repeat: int) -> dict[str, float]:
    if kind in ("floor", "strands"):
        return floor_case(n, repeat, strands=kind == "strands")
    from runner.engine.plan import compile_workflow
    from runner.engine.session import run_plan
    from runner.spec import load_workflow

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
        t0 = time.perf_counter()
        outcome = run_plan(plan, {})
        total = time.perf_counter() - t0
        assert outcome.status == "ok", outcome.error
        walls.append(outcome.report()["run"]["wall_s"])
    del total
    best = min(walls)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "wall_s": best,
        "median_wall_s": sorted(walls)[len(walls) // 2],
        "ideal_s": ideal,
        "ratio": best / ideal,
        "peak_mb": peak_mb,
    }


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
    cases = [("fanout", n) for n in (1, 10, 100, 1000, 10000)] + [("chain", 10)]
    cases += [("floor", 1000), ("floor", 10000), ("strands", 1000), ("strands", 10000)]
    # Rounds interleave the cases, so a slow spell of a shared machine weighs on every case alike.
    results: dict[tuple[str, int], list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for kind, n in cases:
            out = subprocess.run(
                [sys.executable, __file__, "--case", kind, "--n", str(n), "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            results[(kind, n)].append(json.loads(out.stdout))
    print(
        f"engine overhead, scripted latency {LATENCY_MS} ms, best of {args.rounds} rounds x {args.repeat} runs, "
        "one process per case and round"
    )
    print(f"{'case':<20} {'ideal s':>8} {'wall s':>8} {'median s':>9} {'ratio':>6} {'peak MB':>8}  bar")
    for (kind, n), rounds in results.items():
        r = min(rounds, key=lambda one: one["wall_s"])
        median = sorted(one["median_wall_s"] for one in rounds)[len(rounds) // 2]
        peak = max(one["peak_mb"] for one in rounds)
        bar = BARS.get((kind, n))
        verdict = ""
        if bar is not None:
            met = r["ratio"] <= bar and peak < MAX_PEAK_MB
            verdict = f"<= {bar}x, < {MAX_PEAK_MB} MB: {'met' if met else 'MISSED'}"
        print(
            f"{LABELS.get(kind, kind) + ' ' + str(n):<20} {r['ideal_s']:>8.3f} {r['wall_s']:>8.3f} "
            f"{median:>9.3f} {r['ratio']:>6.2f} {peak:>8.1f}  {verdict}"
        )


if __name__ == "__main__":
    main()
