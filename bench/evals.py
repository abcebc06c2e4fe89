"""Evaluations (issue 24): what checking assertions adds to a dataset run, judge calls aside.

The same 1,000 labelled rows of a one-stage workflow with a structured output, against the loopback
OpenAI-compatible server (``tests/oai_server.py``, a process of its own, fixed latency), run two ways:

* ``plain``: ``runner run WF --dataset FILE``, the workflow without assertions;
* ``eval``: ``runner eval WF --dataset FILE`` of the same workflow with a field-equals (``path: data.label``
  against the row's ``label``), a regex and a Python assertion (verdicts per row in results.jsonl, the totals in
  report.json and report.md; with ``--formats junit,html`` also the JUnit XML and the verdicts' page, which the
  workflow's ``report.formats`` ask for).

Each case runs in a process of its own per round, the cases interleaved over rounds so a slow spell of a shared
machine weighs on both alike; times are taken inside the process around ``runner.cli.main`` (interpreter start-up
left out), with the process's CPU time over the same span (less sensitive to a busy machine than the wall time);
figures are medians, and the median of the rounds' eval / plain ratios. Bar: eval / plain at most 1.1 (wall).

    python bench/evals.py [--rounds 5] [--rows 1000] [--concurrency 32] [--formats junit,html]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BAR = 1.1
CPU: list[float] = []  # the CPU seconds (user + system) of each run_main in this process

WORKFLOW = """\
version: 1
name: bench-evals
inputs:
  text: {{type: string}}
models:
  m: {{provider: openai, base_url: "{url}", model: m, stream: false}}
agents:
  classifier:
    model: m
    output: {{schema: {{type: object, required: [label], properties: {{label: {{type: string}}}}}}}}
stages:
  - {{id: classify, agent: classifier, input: "{{{{ inputs.text }}}}"}}
"""

ASSERTIONS = """\
assert:
  - {type: equals, path: data.label, value: "{{ row.label }}", metric: label}
  - {type: regex, value: '"label": "\\w+"', metric: shape}
  - {type: python, value: "bench_checks:short", metric: short}
threshold: 0.01
"""

CHECKS = """\
def short(output):
    return len(output) < 200
"""


def run_main(*args: str) -> float:
    """``runner ARGS`` in this process, timed without the imports."""
    import runner.commands.dataset  # noqa: F401
    import runner.evals.evaluate  # noqa: F401
    import runner.providers.openai  # noqa: F401
    from runner.cli import main

    sink = io.StringIO()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = main(list(args))
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    if code != 0:
        raise SystemExit(f"runner {' '.join(args)} exited {code}:\n{sink.getvalue()[-2000:]}")
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def child(name: str, folder: Path, rows: int, concurrency: int, url: str, formats: str) -> dict[str, Any]:
    wf = folder / "wf.yaml"
    asked = f"report: {{formats: [json, {formats}]}}\n" if formats else ""  # the plain run's too: it ignores them
    wf.write_text(WORKFLOW.format(url=url) + (ASSERTIONS if name == "eval" else "") + asked)
    (folder / "bench_checks.py").write_text(CHECKS)
    data = folder / "rows.jsonl"
    with data.open("w") as f:
        for i in range(rows):
            # the server answers a schema's string with "sss": half the rows are labelled so, half not
            f.write(json.dumps({"text": f"ticket {i}", "label": "sss" if i % 2 else "other"}) + "\n")
    command = "eval" if name == "eval" else "run"
    common = ("--concurrency", str(concurrency), "--quiet")
    run_main(command, str(wf), "--dataset", str(folder / "rows.jsonl"), "--limit", "20", "--report-dir",
             str(folder / "warm"), *common)  # fmt: skip
    wall = run_main(command, str(wf), "--dataset", str(data), "--report-dir", str(folder / "r"), *common)
    return {"wall_s": wall, "cpu_s": CPU[-1]}


def spawn(name: str, folder: Path, rows: int, concurrency: int, url: str, formats: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, str(folder), str(rows), str(concurrency), url, formats],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "oai_server.py"), "--latency", str(latency), "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        name, folder, rows, concurrency, url, formats = sys.argv[2:]
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child(name, Path(folder), int(rows), int(concurrency), url, formats)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=int, default=20, help="the loopback server's latency per request")
    parser.add_argument("--formats", default="", help="report formats beside json, e.g. junit,html (default: none)")
    args = parser.parse_args()
    server, url = start_server(args.latency_ms / 1000)
    runs: dict[str, list[float]] = {"plain": [], "eval": []}
    cpu: dict[str, list[float]] = {"plain": [], "eval": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for name in ("plain", "eval") if r % 2 == 0 else ("eval", "plain"):
                    folder = Path(tmp) / f"{name}-{r}"
                    folder.mkdir()
                    got = spawn(name, folder, args.rows, args.concurrency, url, args.formats.replace(",", ", "))
                    runs[name].append(got["wall_s"])
                    cpu[name].append(got["cpu_s"])
    finally:
        server.kill()
        server.wait()
    plain, evaluated = statistics.median(runs["plain"]), statistics.median(runs["eval"])
    ratio = evaluated / plain
    # each round's two runs side by side: a slow spell of the machine weighs on both of a pair
    pairs = statistics.median(e / p for e, p in zip(runs["eval"], runs["plain"], strict=True))
    cpu_plain, cpu_eval = statistics.median(cpu["plain"]), statistics.median(cpu["eval"])
    print(
        f"evals: {args.rows:,} rows against the loopback server ({args.latency_ms} ms), {args.concurrency} in flight, "
        f"{args.rounds} interleaved rounds (medians); formats: json{', ' + args.formats if args.formats else ''}\n"
        f"  plain dataset run  {plain:.2f} s  {' '.join(f'{x:.2f}' for x in runs['plain'])}\n"
        f"  eval (3 asserts)   {evaluated:.2f} s  {' '.join(f'{x:.2f}' for x in runs['eval'])}\n"
        f"  ratio              {ratio:.3f} (bar {BAR}); median of the rounds' ratios {pairs:.3f}\n"
        f"  CPU of the process {cpu_plain:.2f} s plain, {cpu_eval:.2f} s eval: {cpu_eval / cpu_plain:.3f}x, "
        f"{(cpu_eval - cpu_plain) / args.rows * 1e6:.0f} us a row\n"
        f"  load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )
    return 1 if ratio > BAR else 0


if __name__ == "__main__":
    raise SystemExit(main())
