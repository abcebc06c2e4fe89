"""Replay overhead: a 1,000-way fan-out replayed instantly from a cassette against the scripted provider's run.

The fan-out (each branch an agent with a rendered system prompt and input) is recorded once against the
loopback server (``tests/oai_server.py``, in its own thread here), JSON and streamed; then, in alternation, one
process per run: the same fan-out on a ``scripted`` model with no latency (**scripted**: the engine and a
simulated model, no HTTP at all), and the recorded one replayed with ``--replay DIR --strict`` at ``instant``
timing (**replay**: the OpenAI-compatible provider's whole path, request body, key, cassette lookup, answer
parsing, with the cassette's file read in place of the network). The wall time is taken in the child around
``run_session`` (the loop's creation and close included), as for ``runner run``. Bar (issue 19): replay at most
1.3x scripted, medians of interleaved runs.

Run: ``python bench/replay_overhead.py [--n 1000] [--rounds 5] [--runs 3]``.
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
    """One run in this process; its wall time around the session. Every case imports the same modules first
    (the HTTP stack included): imports are the process's start-up, paid once whatever it runs."""
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="runs of each case per round")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        print(json.dumps(child(kind, path, rest[0] if rest else None)))
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scripted = tmp / "scripted.yaml"
        scripted.write_text(WORKFLOW.format(n=args.n, model=SCRIPTED))
        cases: dict[str, tuple[Path, Path | None]] = {"scripted": (scripted, None)}
        for stream in (False, True):
            wf, tape = record(tmp, args.n, stream)
            mode = "stream" if stream else "json"
            cases[f"mock endpoint {mode}"] = (wf, tape)
            cases[f"replay {mode}"] = (wf, tape)
        walls: dict[str, list[float]] = {name: [] for name in cases}
        per_round: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            medians = {}
            for _ in range(args.runs):
                for name, (wf, tape) in cases.items():  # interleaved: a slow spell weighs on every case
                    walls[name].append(spawn(name, wf, tape))
            for name in cases:
                medians[name] = statistics.median(walls[name][-args.runs :])
            for name in cases:
                per_round[name].append(medians[name] / medians["scripted"])
    base = statistics.median(walls["scripted"])
    print(f"{args.n}-way fan-out, {args.rounds} rounds of {args.runs} interleaved runs per case, medians")
    print("| case | wall s | /scripted | rounds /scripted |")
    print("|---|---:|---:|---:|")
    failed = False
    for name in cases:
        median = statistics.median(walls[name])
        ratio = median / base
        spread = f"{min(per_round[name]):.2f}-{max(per_round[name]):.2f}"
        print(f"| {name} | {median:.3f} | {ratio:.2f} | {spread} |")
        failed |= name != "scripted" and ratio > BAR
    print(f"bar: replay at most {BAR}x scripted: {'FAILED' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
