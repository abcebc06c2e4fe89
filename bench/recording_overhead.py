"""Recording cost: the engine-overhead cases run with recording on (the default ``Recorder``), off (a
``NullRecorder``), and on with what ``runner run`` adds on a terminal ("watch": the event log and the progress
line, loop tasks tailing the recorder), interleaved in one process so that drift and noise hit every mode alike.
Also times building the report from what was recorded (after the run, outside the wall time).

Run: ``python bench/recording_overhead.py [--repeat 9]``. Ratio = median wall time of a mode / median with
recording off; the target is on/off within 1.05.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_overhead import CHAIN, FANOUT, LATENCY_MS  # noqa: E402

from runner.engine.session import run_plan  # noqa: E402
from runner.events import NullRecorder, Recorder  # noqa: E402
from runner.logs import EventLog  # noqa: E402
from runner.plan.compile import compile_workflow  # noqa: E402
from runner.progress import Progress  # noqa: E402
from runner.validate.check import load_workflow  # noqa: E402


def plan_for(kind: str, n: int):  # type: ignore[no-untyped-def]
    if kind == "fanout":
        text = FANOUT.format(n=n, latency=LATENCY_MS)
    else:
        stages = "\n".join(f"  - {{id: s{i}, agent: worker}}" for i in range(n))
        text = CHAIN.format(n=n, latency=LATENCY_MS, stages=stages)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(text)
        return compile_workflow(load_workflow(path))


async def _watchers(recorder: Recorder, info) -> None:  # type: ignore[no-untyped-def]
    """What ``runner run`` adds on a terminal: the event log and the progress line (drawn into a buffer)."""
    bar = Progress(io.StringIO(), width=100)
    await asyncio.gather(EventLog(logging.getLogger("runner"), info.t0).run(recorder), bar.run(recorder, info.t0))


def one(plan, mode: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall time, seconds to build the report afterwards)."""
    recorder = NullRecorder() if mode == "off" else Recorder()
    watch = _watchers if mode == "on+watch" else None
    outcome = run_plan(plan, {}, recorder=recorder, watch=watch, tune_gc=True)
    assert outcome.status == "ok", outcome.error
    wall = outcome.end - outcome.info.t0
    t = time.perf_counter()
    outcome.report()
    return wall, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    logging.getLogger("runner").setLevel(logging.WARNING)
    cases = [("fanout", 100), ("fanout", 1000), ("fanout", 10000), ("chain", 10)]
    modes = ("off", "on", "on+watch")
    print(f"recording cost, scripted latency {LATENCY_MS} ms, {args.repeat} interleaved runs per mode, medians")
    print(f"{'case':<14} {'off s':>8} {'on s':>8} {'watch s':>8} {'on/off':>7} {'watch/off':>9} {'report s':>9}")
    for kind, n in cases:
        plan = plan_for(kind, n)
        one(plan, "on")  # warm up: imports, first-run caches
        walls: dict[str, list[float]] = {m: [] for m in modes}
        builds: list[float] = []
        for i in range(args.repeat):
            order = modes if i % 2 == 0 else tuple(reversed(modes))  # alternate who goes first
            for mode in order:
                wall, build = one(plan, mode)
                walls[mode].append(wall)
                if mode == "on":
                    builds.append(build)
        med = {m: statistics.median(v) for m, v in walls.items()}
        print(
            f"{kind + ' ' + str(n):<14} {med['off']:>8.4f} {med['on']:>8.4f} {med['on+watch']:>8.4f} "
            f"{med['on'] / med['off']:>7.3f} {med['on+watch'] / med['off']:>9.3f} {statistics.median(builds):>9.4f}"
        )


if __name__ == "__main__":
    main()
