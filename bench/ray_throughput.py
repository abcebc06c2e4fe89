"""Dataset batches on Ray (issue 18): the local executor against Ray with 1 and 2 workers, same rows, same run.

One Ray instance is started by this script (2 CPUs, no dashboard, loopback only) and the loopback OpenAI server
runs as a process of its own (``tests/oai_server.py``, no added latency, so the rows cost CPU, not waiting: what
a second worker can add). Each case is ``runner run WF --dataset FILE`` in a process of its own, the cases
interleaved over rounds; figures are medians. From each run's report:

* ``wall``: the batch from start to end (for Ray: joining the cluster is before it, starting the workers in it);
* ``span``: from the first row's start to the last row's end (Ray: from trace.json; local: the wall, whose
  start-up is a few milliseconds), and ``rows/s`` over it;
* Ray's overhead per row, in CPU (the machine is shared, so CPU seconds say more than wall time): each
  executor's CPU per row is taken as the difference between a run of 2N rows and one of N rows (the driver
  process's CPU and, for Ray, its workers' from the report), which cancels what does not grow with rows
  (importing Ray, joining the cluster, starting workers); the overhead is Ray's (1 worker) less the local one.

Then the parts the scaling note (docs/ray.md) builds on, measured here: a round trip to the rate budget actor,
and the driver's own cost per row (a line in results.jsonl, the ledger's update), which bounds any cluster.

    python bench/ray_throughput.py [--rows 2000] [--rounds 3] [--concurrency 32] [--shard-rows 32,100,200,800]

The table measured on the 2-CPU machine of this project, and why 2 workers are not 2x (1.52x there: three busy
processes, the driver and two workers, and the server on 2 CPUs under a load average near 20), are in
docs/ray.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKFLOW = """\
version: 1
name: rows
inputs:
  text: {{type: string}}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: bench
    stream: false
agents:
  a: {{model: main, sys_prompt: "Label it."}}
stages:
  - {{id: label, agent: a, input: "{{{{ inputs.text }}}}"}}
"""


def run_case(wf: Path, data: Path, reports: Path, concurrency: int, extra: list[str]) -> dict[str, Any]:
    if reports.exists():
        shutil.rmtree(reports)
    args = ["run", str(wf), "--dataset", str(data), "--concurrency", str(concurrency), "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *args, "--report-dir", str(reports), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"runner {' '.join(args + extra)} failed:\n{proc.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    (folder,) = (reports / "runs").iterdir()
    report = json.loads((folder / "report.json").read_text())
    wall = float(report["run"]["wall_s"])
    span = wall
    if (folder / "trace.json").exists():
        rows = [e for e in json.loads((folder / "trace.json").read_text())["traceEvents"] if e["ph"] == "X"]
        span = (max(e["ts"] + e["dur"] for e in rows) - min(e["ts"] for e in rows)) / 1e6
    done = report["rows"]["ok"] + report["rows"]["failed"]
    cpu += sum(w["cpu_s"] or 0.0 for w in report.get("workers", {}).get("workers", {}).values())
    return {"wall": wall, "span": span, "rows": done, "failed": report["rows"]["failed"], "cpu": cpu}


def budget_round_trip(ray: Any, n: int = 300) -> float:
    """Seconds per sequential round trip to a RateBudget actor (one worker's lease request)."""
    from runner.dataset.onray.budget import RateBudget  # noqa: PLC0415

    budget = ray.remote(RateBudget).options(num_cpus=0).remote({"m": (6e9, None)})
    ray.get(budget.take.remote("m", 1, 0))

    async def main() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await budget.take.remote("m", 1, 0)
        return (time.perf_counter() - start) / n

    try:
        return asyncio.run(main())
    finally:
        ray.kill(budget)


def driver_cost(n: int = 20_000) -> float:
    """Seconds the driver spends per row it is given: the row's line appended to results.jsonl and its ledger
    update (started and ended), as runner/commands/dataset.py does for every row of any executor."""
    from runner.dataset.ledger import Ledger  # noqa: PLC0415
    from runner.dataset.results import ResultsFile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ledger = Ledger.create(folder, {"workflow": "wf.yaml"})
        out = ResultsFile(folder / "results.jsonl")
        line = {"index": 0, "key": "0", "status": "ok", "output": "label:t0", "error": None, "latency_s": 0.01}
        start = time.perf_counter()
        for i in range(n):
            ledger.started(i, str(i))
            out.append({**line, "index": i, "key": str(i)})
            ledger.ended(i, str(i), True, None)
        elapsed = time.perf_counter() - start
        out.close()
        ledger.close()
    return elapsed / n


def shard_sizes(opts: argparse.Namespace, sizes: list[int], wf: Path, data: Path, address: str) -> int:
    """Rows span and CPU with 2 workers for each shard size (interleaved rounds, medians)."""
    extra = ["--executor", "ray", "--workers", "2", "--ray-address", address]
    got: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for rnd in range(opts.rounds):
        for size in sizes:
            os.environ["RUNNER_RAY_SHARD_ROWS"] = str(size)
            got[size].append(run_case(wf, data, wf.parent.parent / "reports", opts.concurrency, extra))
            print(f"round {rnd + 1} shard {size}: {got[size][-1]}", file=sys.stderr, flush=True)
    os.environ.pop("RUNNER_RAY_SHARD_ROWS", None)
    load = os.getloadavg()
    print(f"\n{2 * opts.rows:,} rows, 2 workers, --concurrency {opts.concurrency}; {opts.rounds} rounds (medians); "
          f"load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| shard rows | rows span | rows/s | CPU (driver + workers) |")
    print("|---:|---:|---:|---:|")
    for size, runs in got.items():
        span = statistics.median(r["span"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"| {size} | {span:.2f} s | {2 * opts.rows / span:,.0f} | {cpu:.2f} s |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="N: the throughput runs take 2N rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--shard-rows", help="instead: 2 workers, 2N rows, with each of these shard sizes (comma-separated)"
    )
    opts = parser.parse_args()

    temp = Path(tempfile.mkdtemp(prefix="rayb", dir="/tmp"))
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only
    os.environ["RAY_TMPDIR"] = str(temp)
    import logging  # noqa: PLC0415

    import ray  # noqa: PLC0415

    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "oai_server.py"), "--latency", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"the server did not start: {line!r}")
        url = f"http://127.0.0.1:{line.split()[1]}/v1"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 namespace="runner", _temp_dir=str(temp))  # fmt: skip
        address = ray.get_runtime_context().gcs_address
        work = temp / "work"
        (work / "flow").mkdir(parents=True)
        wf = work / "flow" / "wf.yaml"
        wf.write_text(WORKFLOW.format(url=url))
        data = {}
        for n in (opts.rows, 2 * opts.rows):
            data[n] = work / f"d{n}.jsonl"
            data[n].write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(n)))
        one = ["--executor", "ray", "--workers", "1", "--ray-address", address]
        cases = {
            ("local", 2): [],
            ("ray, 1 worker", 2): one,
            ("ray, 2 workers", 2): ["--executor", "ray", "--workers", "2", "--ray-address", address],
            ("local", 1): [],
            ("ray, 1 worker", 1): one,
        }
        if opts.shard_rows:
            return shard_sizes(opts, [int(x) for x in opts.shard_rows.split(",")], wf, data[2 * opts.rows], address)
        got: dict[tuple[str, int], list[dict[str, Any]]] = {case: [] for case in cases}
        for rnd in range(opts.rounds):
            for (name, k), extra in cases.items():
                got[name, k].append(run_case(wf, data[k * opts.rows], work / "reports", opts.concurrency, extra))
                print(f"round {rnd + 1} {name} x{k}: {got[name, k][-1]}", file=sys.stderr, flush=True)
        trip = budget_round_trip(ray)
    finally:
        server.kill()
        server.wait()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    per_row = driver_cost()

    med = {
        case: {k: statistics.median(r[k] for r in runs) for k in ("wall", "span", "cpu")} for case, runs in got.items()
    }
    load = os.getloadavg()
    n2 = 2 * opts.rows
    print(f"\n{n2:,} rows, --concurrency {opts.concurrency}, loopback server without latency, "
          f"{opts.rounds} interleaved rounds (medians); load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| executor | wall | rows span | rows/s (span) | vs local | CPU (driver + workers) |")
    print("|---|---:|---:|---:|---:|---:|")
    base = med["local", 2]["span"]
    for name in ("local", "ray, 1 worker", "ray, 2 workers"):
        m = med[name, 2]
        print(f"| {name} | {m['wall']:.2f} s | {m['span']:.2f} s | {n2 / m['span']:,.0f} | "
              f"{base / m['span']:.2f}x | {m['cpu']:.2f} s |")  # fmt: skip
    local_row = (med["local", 2]["cpu"] - med["local", 1]["cpu"]) / opts.rows
    ray_row = (med["ray, 1 worker", 2]["cpu"] - med["ray, 1 worker", 1]["cpu"]) / opts.rows
    print(f"\nCPU per row (2N rows less N rows): local {local_row * 1e6:,.0f} us, Ray with 1 worker "
          f"{ray_row * 1e6:,.0f} us: Ray's overhead {(ray_row - local_row) * 1e6:,.0f} us a row")  # fmt: skip
    print(
        f"2 workers / 1 worker (rows span): {med['ray, 1 worker', 2]['span'] / med['ray, 2 workers', 2]['span']:.2f}x"
    )
    print(f"a round trip to the rate budget actor: {trip * 1e3:.2f} ms")
    print(f"the driver's cost per row (results.jsonl line + ledger): {per_row * 1e6:,.0f} us "
          f"(at most {1 / per_row:,.0f} rows/s for any cluster)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
