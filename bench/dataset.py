"""Datasets (issue 17): a batch over rows against the same work done without a batch, and its memory.

Three comparisons, each case in a process of its own per round, the cases interleaved over rounds so that a
slow spell of a shared machine weighs on each alike; figures are medians. Times are taken inside the process
around ``runner.cli.main`` (what the ``runner`` script calls), so interpreter start-up is left out of both sides.

* ``scripted``: 10,000 rows of a two-stage scripted workflow (``runner run --dataset``, results.jsonl and the
  SQLite ledger written as it goes) against the same 10,000 items as one in-process fan-out of the same two
  stages (``runner run`` of a fan-out with ``max_concurrency`` equal to ``--concurrency``). Bar: at most 1.2x.
* ``http``: 1,000 rows of one stage against the loopback OpenAI-compatible server (``tests/oai_server.py``, a
  process of its own, fixed latency) against raw aiohttp making the same 1,000 requests with the same bound (a
  semaphore of ``--concurrency``). Bar: at most 1.3x.
* ``memory``: 100,000 rows, 64 in flight: peak RSS, sampled with the number of rows done. Bar: under 200 MB,
  flat after the first thousand rows.

    python bench/dataset.py [--rounds 3] [--cases scripted,http,memory]
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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BARS = {"scripted": 1.2, "http": 1.3}
MAX_RSS_MB = 200

TWO_STAGES = """\
version: 1
name: rows
inputs:
  item: {{type: integer}}
models:
  m: {{provider: scripted, reply: "done {{{{ input | truncate(30) }}}}", latency: {{first_token_ms: {latency}}}}}
agents:
  first: {{model: m, sys_prompt: "First look."}}
  second: {{model: m, sys_prompt: "Second look."}}
stages:
  - {{id: look, agent: first, input: "Work on item {{{{ inputs.item }}}}."}}
  - {{id: check, agent: second, input: "{{{{ stages.look.content }}}}"}}
"""

FANOUT = """\
version: 1
name: fan
models:
  m: {{provider: scripted, reply: "done {{{{ input | truncate(30) }}}}", latency: {{first_token_ms: {latency}}}}}
agents:
  first: {{model: m, sys_prompt: "First look."}}
  second: {{model: m, sys_prompt: "Second look."}}
stages:
  - id: items
    fanout:
      for_each: "{{{{ range({n}) | list }}}}"
      as: item
      max_concurrency: {concurrency}
      stages:
        - {{id: look, agent: first, input: "Work on item {{{{ vars.item }}}}."}}
        - {{id: check, agent: second, input: "{{{{ stages.look.content }}}}"}}
"""

REMOTE = """\
version: 1
name: remote
inputs:
  item: {{type: integer}}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: bench
    stream: false
    pool: {{max_connections: {concurrency}}}
agents:
  a: {{model: main, sys_prompt: "Say something short."}}
stages:
  - {{id: answer, agent: a, input: "Say something short."}}
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rows_file(folder: Path, n: int) -> Path:
    path = folder / f"rows-{n}.jsonl"
    if not path.exists():
        with path.open("w") as f:
            for i in range(n):
                f.write(f'{{"item": {i}}}\n')
    return path


def run_main(*args: str) -> tuple[int, float]:
    """``runner ARGS`` in this process, timed without the imports (the aiohttp side imports before its clock)."""
    import runner.commands.dataset  # noqa: F401
    import runner.commands.run  # noqa: F401
    import runner.providers.openai  # noqa: F401
    import runner.providers.scripted  # noqa: F401
    from runner.cli import main

    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = main(list(args))
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"runner {' '.join(args)} exited {code}:\n{sink.getvalue()[-2000:]}")
    return code, elapsed


# -- the cases, each run in a child process -------------------------------------------------------------------


def case_batch(folder: Path, n: int, concurrency: int, latency: int) -> dict[str, Any]:
    wf = folder / "rows.yaml"
    wf.write_text(TWO_STAGES.format(latency=latency))
    warm(wf, rows_file(folder, 10), concurrency, folder)
    data = rows_file(folder, n)
    _, wall = run_main(
        "run", str(wf), "--dataset", str(data), "--concurrency", str(concurrency), "-q",
        "--report-dir", str(folder / "reports"),
    )  # fmt: skip
    return {"wall_s": wall, "peak_mb": peak_mb()}


def warm(wf: Path, data: Path, concurrency: int, folder: Path) -> None:
    """A small batch first: what loads on first use (aiohttp, jinja2's compiler, sqlite3) is not the batch's
    cost, as the baselines import their libraries before their clocks start."""
    run_main("run", str(wf), "--dataset", str(data), "--concurrency", str(concurrency), "-q",
             "--report-dir", str(folder / "warm"))  # fmt: skip


def case_fanout(folder: Path, n: int, concurrency: int, latency: int) -> dict[str, Any]:
    small = folder / "fan-warm.yaml"
    small.write_text(FANOUT.format(latency=latency, n=10, concurrency=concurrency))
    run_main("run", str(small), "-q", "--report-dir", str(folder / "warm"))  # as case_batch's warm-up
    wf = folder / "fan.yaml"
    wf.write_text(FANOUT.format(latency=latency, n=n, concurrency=concurrency))
    _, wall = run_main("run", str(wf), "-q", "--report-dir", str(folder / "reports"))
    return {"wall_s": wall, "peak_mb": peak_mb()}


def case_http_runner(folder: Path, n: int, concurrency: int, url: str) -> dict[str, Any]:
    wf = folder / "remote.yaml"
    wf.write_text(REMOTE.format(url=url, concurrency=concurrency))
    warm(wf, rows_file(folder, 10), concurrency, folder)
    data = rows_file(folder, n)
    _, wall = run_main(
        "run", str(wf), "--dataset", str(data), "--concurrency", str(concurrency), "-q",
        "--report-dir", str(folder / "reports"),
    )  # fmt: skip
    return {"wall_s": wall, "peak_mb": peak_mb()}


def case_http_aiohttp(folder: Path, n: int, concurrency: int, url: str) -> dict[str, Any]:
    import asyncio

    import aiohttp

    body = json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "stream": False}
    ).encode()

    async def main() -> float:
        limit = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> None:
                async with (
                    limit,
                    session.post(
                        f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
                    ) as resp,
                ):
                    json.loads(await resp.read())

            await asyncio.gather(*(one() for _ in range(10)))  # as the runner's warm-up batch
        connector = aiohttp.TCPConnector(limit=concurrency)  # cold connections, as each runner batch opens its own
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - start

    try:
        import uvloop

        wall = uvloop.run(main())
    except ImportError:
        wall = asyncio.run(main())
    return {"wall_s": wall, "peak_mb": peak_mb()}


def case_memory(folder: Path, n: int, concurrency: int, latency: int) -> dict[str, Any]:
    """RSS sampled every 50 ms with the rows done (lines of results.jsonl) while the batch runs."""
    wf = folder / "rows.yaml"
    wf.write_text(TWO_STAGES.format(latency=latency))
    data = rows_file(folder, n)
    reports = folder / "reports"
    samples: list[tuple[int, float]] = []
    done = threading.Event()

    def sample() -> None:
        # Reads only what was appended since the last look, in small pieces: the sampler runs in the measured
        # process, and re-reading the whole file each time would grow its RSS rather than the batch's.
        rows = offset = 0
        while not done.wait(0.05):
            results = list(reports.glob("runs/*/results.jsonl"))
            if results:
                with open(results[0], "rb") as f:
                    f.seek(offset)
                    while chunk := f.read(1 << 16):
                        rows += chunk.count(b"\n")
                        offset += len(chunk)
            samples.append((rows, rss_mb()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        _, wall = run_main(
            "run", str(wf), "--dataset", str(data), "--concurrency", str(concurrency), "-q",
            "--report-dir", str(reports),
        )  # fmt: skip
    finally:
        done.set()
        thread.join()
    marks = {}
    for mark in (1_000, 10_000, 25_000, 50_000, 75_000, n):
        at = [mb for rows, mb in samples if rows >= mark]
        marks[str(mark)] = round(at[0], 1) if at else None
    return {"wall_s": wall, "peak_mb": peak_mb(), "rss_at_rows_mb": marks}


CASES = {
    "batch": case_batch,
    "fanout": case_fanout,
    "http-runner": case_http_runner,
    "http-aiohttp": case_http_aiohttp,
    "memory": case_memory,
}


def child(argv: list[str]) -> None:
    name, folder, n, concurrency, extra = argv
    sys.path.insert(0, str(ROOT))
    third: Any = extra if name.startswith("http") else int(extra)
    result = CASES[name](Path(folder), int(n), int(concurrency), third)
    print(json.dumps(result))


# -- the driver -----------------------------------------------------------------------------------------------


def spawn(name: str, folder: Path, n: int, concurrency: int, extra: object) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, str(folder), str(n), str(concurrency), str(extra)],
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


def median_of(runs: list[dict[str, Any]], key: str = "wall_s") -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="scripted,http,memory")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the scripted case")
    parser.add_argument("--concurrency", type=int, default=100, help="rows in flight (fan-out max_concurrency)")
    parser.add_argument("--latency-ms", type=int, default=20, help="the scripted model's latency per call")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if "scripted" in cases:
            runs: dict[str, list[dict[str, Any]]] = {"batch": [], "fanout": []}
            for r in range(args.rounds):
                for name in ("batch", "fanout") if r % 2 == 0 else ("fanout", "batch"):
                    folder = base / f"{name}-{r}"
                    folder.mkdir()
                    runs[name].append(spawn(name, folder, args.rows, args.concurrency, args.latency_ms))
            ratio = median_of(runs["batch"]) / median_of(runs["fanout"])
            ideal = args.rows / args.concurrency * 2 * args.latency_ms / 1000
            print(
                f"scripted: {args.rows:,} rows x 2 stages, {args.concurrency} in flight, {args.latency_ms} ms a call "
                f"(ideal {ideal:.2f} s)\n"
                f"  batch  {median_of(runs['batch']):.2f} s (peak {median_of(runs['batch'], 'peak_mb'):.0f} MB)\n"
                f"  fanout {median_of(runs['fanout']):.2f} s (peak {median_of(runs['fanout'], 'peak_mb'):.0f} MB)\n"
                f"  ratio  {ratio:.2f} (bar {BARS['scripted']})"
            )
            failed |= ratio > BARS["scripted"]
        if "http" in cases:
            server, url = start_server(0.05)
            try:
                runs = {"http-runner": [], "http-aiohttp": []}
                for r in range(args.rounds):
                    order = ("http-runner", "http-aiohttp") if r % 2 == 0 else ("http-aiohttp", "http-runner")
                    for name in order:
                        folder = base / f"{name}-{r}"
                        folder.mkdir()
                        runs[name].append(spawn(name, folder, 1000, args.concurrency, url))
            finally:
                server.kill()
                server.wait()
            ratio = median_of(runs["http-runner"]) / median_of(runs["http-aiohttp"])
            print(
                f"http: 1,000 rows against the loopback server (50 ms), {args.concurrency} in flight\n"
                f"  runner  {median_of(runs['http-runner']):.2f} s\n"
                f"  aiohttp {median_of(runs['http-aiohttp']):.2f} s\n"
                f"  ratio   {ratio:.2f} (bar {BARS['http']})"
            )
            failed |= ratio > BARS["http"]
        if "memory" in cases:
            folder = base / "memory"
            folder.mkdir()
            result = spawn("memory", folder, 100_000, 64, 1)
            marks = result["rss_at_rows_mb"]
            print(
                f"memory: 100,000 rows, 64 in flight: {result['wall_s']:.1f} s, peak RSS {result['peak_mb']:.0f} MB "
                f"(bar {MAX_RSS_MB}); RSS at rows done: " + ", ".join(f"{int(k):,}: {v} MB" for k, v in marks.items())
            )
            failed |= result["peak_mb"] >= MAX_RSS_MB
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
