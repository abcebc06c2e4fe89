"""What a run's checkpoint costs (issue 23, bar: at most 1.1x a run without it for a 1,000-way fan-out).

A 1,000-way fan-out over the scripted provider, run as ``runner run`` runs it (a Session on uvloop, the collector
tuned), with and without a checkpoint: with one, the checkpoint is made in a fresh run folder before the run (the
settings, each stage's hash) and closed after it, and every branch's output and the fan-out's are committed, so
the figure is the whole cost a run pays. The two alternate run by run (``--rounds`` x ``--repeat``), so a slow
spell of a shared machine weighs on both alike; the ratio is of the medians. Two latencies: the scripted model's
50 ms first token (as ``bench/engine_overhead.py``, the bar's case) and 0 ms, where nothing hides the checkpoint's
own cost. Also shown: resuming the finished run, every branch restored from the checkpoint.

    python bench/checkpoint.py [--n 1000] [--rounds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.engine.checkpoint import Checkpoint  # noqa: E402
from runner.engine.session import Session, run_session  # noqa: E402
from runner.plan.compile import Plan, compile_workflow  # noqa: E402
from runner.validate.check import load_workflow  # noqa: E402

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
BAR = 1.1
CPU: list[float] = []  # each run's CPU seconds (the process's, the writer thread's included), in order


def once(plan: Plan, folder: Path | None, *, resume: bool = False) -> tuple[float, float]:
    """Wall seconds of one run: the run's own (its report's ``wall_s``) and the whole, with the checkpoint's
    making (or opening) and closing (which waits for its writer) when ``folder``."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    ckpt = None
    if folder is not None:
        ckpt = Checkpoint.open(folder) if resume else Checkpoint.start(folder, plan.workflow, {})
    try:
        outcome = run_session(Session(plan, {}, checkpoint=ckpt), tune_gc=True)
    finally:
        if ckpt is not None:
            ckpt.close()
    assert outcome.status == "ok", outcome.error
    CPU.append(time.process_time() - c0)
    return outcome.end - outcome.info.t0, time.perf_counter() - t0


def case(n: int, latency: int, rounds: int, repeat: int, tmp: Path) -> dict[str, Any]:
    path = tmp / f"fan-{latency}.yaml"
    path.write_text(FANOUT.format(n=n, latency=latency))
    plan = compile_workflow(load_workflow(path))
    once(plan, None)  # warm: imports, the template cache
    walls: dict[str, list[float]] = {"without": [], "with": [], "without whole": [], "with whole": []}
    per_round: list[float] = []
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    runs = 0
    for _ in range(rounds):
        a: list[float] = []
        b: list[float] = []
        for _ in range(repeat):
            runs += 1
            run, whole = once(plan, None)
            cpu["without"].append(CPU[-1])
            a.append(whole)
            walls["without"].append(run)
            walls["without whole"].append(whole)
            run, whole = once(plan, tmp / f"run-{latency}-{runs}")
            cpu["with"].append(CPU[-1])
            b.append(whole)
            walls["with"].append(run)
            walls["with whole"].append(whole)
        per_round.append(statistics.median(b) / statistics.median(a))
    out: dict[str, Any] = {k: statistics.median(v) for k, v in walls.items()}
    out["rounds"] = per_round
    out["cpu"] = statistics.median(cpu["with"]) / statistics.median(cpu["without"])
    out["resume"] = statistics.median(once(plan, tmp / f"run-{latency}-{k}", resume=True)[1] for k in range(1, 4))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"checkpoint cost, {args.n}-way fan-out over the scripted provider, medians of {args.rounds} rounds x "
        f"{args.repeat} runs each way, interleaved; load average {load:.1f} on {os.cpu_count()} cores"
    )
    print("run: the run's own wall time (its report's wall_s); whole: with the checkpoint's making and closing")
    print(
        f"{'latency':<9} {'run s':>7} {'with':>7} {'ratio':>6} {'whole s':>8} {'with':>7} {'ratio':>6} "
        f"{'rounds (whole)':>15} {'cpu ratio':>9} {'resume s':>9}  bar (whole)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for latency in (50, 0):
            r = case(args.n, latency, args.rounds, args.repeat, Path(tmp))
            ratio = r["with whole"] / r["without whole"]
            verdict = f"<= {BAR}x: {'met' if ratio <= BAR else 'MISSED'}" if latency == 50 else "(no bar: cost alone)"
            print(
                f"{str(latency) + ' ms':<9} {r['without']:>7.3f} {r['with']:>7.3f} {r['with'] / r['without']:>6.2f} "
                f"{r['without whole']:>8.3f} {r['with whole']:>7.3f} {ratio:>6.2f} "
                f"{min(r['rounds']):>7.2f}-{max(r['rounds']):<7.2f} {r['cpu']:>9.2f} {r['resume']:>9.3f}  {verdict}"
            )


if __name__ == "__main__":
    main()
