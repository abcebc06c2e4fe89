"""Replay overhead: a 1,000-way fan-out replayed instantly from a cassette against the scripted provider's run.

The fan-out (each branch an agent with a rendered system prompt and input) is recorded once against the
loopback server (``tests/oai_server.py``, in its own thread here), JSON and streamed; then, in alternation, one
process per run: the same fan-out on a ``scripted`` model with no latency (**scripted**: the engine and a
simulated model, no HTTP at all), and the recorded one replayed with ``--replay DIR --strict`` at ``instant``
timing (**replay**: the OpenAI-compatible provider's whole path, request body, key, cassette lookup, answer
parsing, with the cassette's file read in place of the network). Two readings:

- **in process**: the wall time is taken in the child around ``run_session`` (the loop's creation and close
  included), every case having imported the same modules first; **mock endpoint** rows are the provider's own
  path with an ``httpx.MockTransport`` answering, for scale.
- **whole process**: ``python -m runner run WF -q`` as users run it, timed from outside (start-up, imports,
  validation, the run, the report): ``--replay DIR --strict`` against ``--offline`` of the SAME workflow (every
  model scripted, no network) and against the scripted workflow. Each case a fresh process, interleaved.

Bar (issue 19): replay at most 1.3x scripted, medians of interleaved runs; the bar line says which reading it
checks (``--bar in-process|whole``, in-process by default: the issue's "costs" is the run, not the interpreter's
start-up, which ``--offline`` pays as well).

Run: ``python bench/replay_overhead.py [--n 1000] [--rounds 5] [--runs 3] [--only in-process|whole]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BAR = 1.3

WORKFLOW = """
version: 1
name: fanout-{n}
models:
{model}
agents:
  worker: {{model: m, sys_prompt: "You are worker {{{{ vars.item }}}}."}}
stages:
  - id: fan
    input: "Work on item {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range({n}) | list }}}}", agent: worker}}
"""

SCRIPTED = """\
  m:
    provider: scripted
    reply: "done {{ vars.item }}"
"""

OPENAI = """\
  m:
    provider: openai
    base_url: "{url}"
    model: bench-model
    stream: {stream}
    pool: {{max_connections: 100}}
"""


def child(kind: str, path: str, cassette: str | None) -> dict[str, Any]:
    """One run in this process; its wall time around the session. Every case imports what it uses before the
    clock starts (httpx only for the mock endpoint: a strict replay never imports it): imports are the process's
    start-up, which the whole-process reading counts."""
    import runner.providers.openai  # noqa: F401
    from runner.cassette import Cassette, Tape
    from runner.engine.session import Session, run_session
    from runner.plan.compile import compile_workflow
    from runner.validate.check import load_workflow
    from runner.workflow.inputs import resolve_inputs

    wf = load_workflow(path)
    plan = compile_workflow(wf)
    tape = Tape(Cassette(cassette), "replay", strict=True) if cassette and kind != "mock" else None
    transport = None
    if kind == "mock":  # the provider's own path with an endpoint faked in memory: no cassette, no network
        import httpx

        answer = Cassette(cassette).load(next(Path(cassette).glob("*.json")))
        content, headers = answer.body, answer.response["headers"]

        def endpoint(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers=headers, content=content)

        transport = httpx.MockTransport(endpoint)
    with tempfile.TemporaryDirectory() as run_dir:
        session = Session(plan, resolve_inputs(wf, [], None), run_dir=run_dir, wrapper=tape, transport=transport)
        t0 = time.perf_counter()
        outcome = run_session(session, tune_gc=True)
        wall = time.perf_counter() - t0
    assert outcome.status == "ok", outcome.error
    if tape is not None:
        assert tape.counts.replayed == len(outcome.output), tape.counts
    return {"kind": kind, "wall": wall}


def record(tmp: Path, n: int, stream: bool) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    from runner.cassette import Cassette, Tape
    from runner.engine.session import Session, run_session
    from runner.plan.compile import compile_workflow
    from runner.validate.check import load_workflow
    from tests.oai_server import OAIServer, Plan

    mode = "stream" if stream else "json"
    wf = tmp / f"openai-{mode}.yaml"
    tape_dir = tmp / f"tape-{mode}"
    with OAIServer() as server:
        server.default = Plan(content="done, recorded", tokens=["done", ", recorded"])
        wf.write_text(WORKFLOW.format(n=n, model=OPENAI.format(url=server.url, stream=str(stream).lower())))
        plan = compile_workflow(load_workflow(wf))
        tape = Tape(Cassette(tape_dir, create=True), "record")
        outcome = run_session(Session(plan, {}, run_dir=tmp / "rec", wrapper=tape), quiet=True)
        assert outcome.status == "ok", outcome.error
    assert tape.counts.recorded == n
    return wf, tape_dir


def spawn(kind: str, wf: Path, cassette: Path | None) -> float:
    args = [sys.executable, __file__, "--child", kind.split()[0], str(wf)] + ([str(cassette)] if cassette else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    return float(json.loads(out.stdout.splitlines()[-1])["wall"])


def spawn_cli(wf: Path, extra: list[str], report_dir: Path, cache_dir: Path) -> float:
    """One ``python -m runner run`` as users run it; its wall time from outside the process."""
    args = [sys.executable, "-m", "runner", "run", str(wf), "-q", "--report-dir", str(report_dir), *extra]
    env = {"PYTHONPATH": str(ROOT), "RUNNER_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"}
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd=ROOT, env=env)
    return time.perf_counter() - t0


def table(title: str, walls: dict[str, list[float]], per_round: dict[str, list[float]], base: str) -> dict[str, float]:
    """Print one reading's table; each case's median ratio to ``base``."""
    print(title)
    print(f"| case | wall s | /{base} | rounds /{base} |")
    print("|---|---:|---:|---:|")
    ratios = {}
    for name in walls:
        median = statistics.median(walls[name])
        ratios[name] = ratio = median / statistics.median(walls[base])
        spread = f"{min(per_round[name]):.2f}-{max(per_round[name]):.2f}"
        print(f"| {name} | {median:.3f} | {ratio:.2f} | {spread} |")
    print()
    return ratios


def rounds(cases: dict[str, Any], run: Any, n_rounds: int, runs: int, base: str) -> tuple[dict[str, list[float]], ...]:
    """``run(case)`` for every case, interleaved (a slow spell weighs on every case), ``runs`` times a round."""
    walls: dict[str, list[float]] = {name: [] for name in cases}
    per_round: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(n_rounds):
        for _ in range(runs):
            for name, case in cases.items():
                walls[name].append(run(case))
        medians = {name: statistics.median(walls[name][-runs:]) for name in cases}
        for name in cases:
            per_round[name].append(medians[name] / medians[base])
    return walls, per_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="runs of each case per round")
    parser.add_argument("--only", choices=["in-process", "whole"], help="one reading only")
    parser.add_argument("--bar", choices=["in-process", "whole"], default="in-process", help="the reading checked")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        print(json.dumps(child(kind, path, rest[0] if rest else None)))
        return 0
    readings: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scripted = tmp / "scripted.yaml"
        scripted.write_text(WORKFLOW.format(n=args.n, model=SCRIPTED))
        recorded = {stream: record(tmp, args.n, stream) for stream in (False, True)}
        print(f"{args.n}-way fan-out, {args.rounds} rounds of {args.runs} interleaved runs per case, medians\n")
        if args.only in (None, "in-process"):
            cases: dict[str, tuple[Path, Path | None]] = {"scripted": (scripted, None)}
            for stream, (wf, tape) in recorded.items():
                mode = "stream" if stream else "json"
                cases[f"mock endpoint {mode}"] = (wf, tape)
                cases[f"replay {mode}"] = (wf, tape)
            walls, per_round = rounds(
                {name: name for name in cases},
                lambda name: spawn(name, *cases[name]),
                args.rounds,
                args.runs,
                "scripted",
            )
            readings["in-process"] = table("in process (around run_session):", walls, per_round, "scripted")
        if args.only in (None, "whole"):
            cache_dir, report_dir = tmp / "cache", tmp / "reports"
            (json_wf, json_tape), (stream_wf, stream_tape) = recorded[False], recorded[True]
            whole: dict[str, tuple[Path, list[str]]] = {
                "scripted": (scripted, []),
                "offline json": (json_wf, ["--offline"]),
                "replay json": (json_wf, ["--replay", str(json_tape), "--strict"]),
                "offline stream": (stream_wf, ["--offline"]),
                "replay stream": (stream_wf, ["--replay", str(stream_tape), "--strict"]),
            }
            for wf, extra in whole.values():  # warm: the schema verdicts cached, as in a repeated CI run
                spawn_cli(wf, extra, report_dir, cache_dir)
            walls, per_round = rounds(
                whole,
                lambda case: spawn_cli(case[0], case[1], report_dir, cache_dir),
                args.rounds,
                args.runs,
                "scripted",
            )
            ratios = table("whole process (`python -m runner run ... -q`, from outside):", walls, per_round, "scripted")
            for mode in ("json", "stream"):
                offline = statistics.median(walls[f"replay {mode}"]) / statistics.median(walls[f"offline {mode}"])
                ratios[f"replay {mode} /offline"] = offline
                print(f"replay {mode} / offline {mode} (same workflow): {offline:.2f}")
            print()
            readings["whole"] = ratios
    failed = False
    for name, ratios in readings.items():  # one bar line per reading taken; --bar names the one that decides
        over = {case: ratio for case, ratio in ratios.items() if case.startswith("replay") and "/" not in case}
        worst = max(over, key=over.__getitem__)
        verdict = "met" if over[worst] <= BAR else "FAILED"
        checked = " (checked)" if name == args.bar or len(readings) == 1 else ""
        print(f"bar, {name} reading{checked}: replay at most {BAR}x scripted: {verdict} ({worst} {over[worst]:.2f}x)")
        if checked:
            failed = verdict == "FAILED"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
