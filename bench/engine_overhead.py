"""Engine overhead: fan-outs of scripted agents with a fixed latency, and a chain, against the ideal.

Each case runs in its own process (so peak memory is that case's alone) through the same path as
``runner run``: load the YAML, validate, compile, run on uvloop. The ratio is the run's wall time over
the ideal (the scripted latency times the critical path's length). Run: ``python bench/engine_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY_MS = 50

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


def one_case(kind: str, n: int, repeat: int) -> dict[str, float]:
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
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.n, args.repeat)))
        return
    cases = [("fanout", n) for n in (1, 10, 100, 1000, 10000)] + [("chain", 10)]
    print(f"engine overhead, scripted latency {LATENCY_MS} ms, best of {args.repeat} runs, one process per case")
    print(f"{'case':<14} {'ideal s':>8} {'wall s':>8} {'median s':>9} {'ratio':>6} {'peak MB':>8}")
    for kind, n in cases:
        out = subprocess.run(
            [sys.executable, __file__, "--case", kind, "--n", str(n), "--repeat", str(args.repeat)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout)
        print(
            f"{kind + ' ' + str(n):<14} {r['ideal_s']:>8.3f} {r['wall_s']:>8.3f} {r['median_wall_s']:>9.3f} "
            f"{r['ratio']:>6.2f} {r['peak_mb']:>8.1f}"
        )


if __name__ == "__main__":
    main()
