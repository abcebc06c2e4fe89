"""Structured outputs' cost (issue 16): parsing and validating a 2 KB structured reply, against the engine's own
overhead on a 1,000-way fan-out, measured in the same run, as a ratio. The bar: under 5%.

The engine's overhead is measured as ``bench/engine_overhead.py`` measures it: the fan-out of 1,000 scripted agents
(50 ms latency) through the same path as ``runner run``, against the provider floor (1,000 bare TaskGroup tasks
awaiting the scripted provider's reply to the same messages, built beforehand: the simulated model's own work with
no engine around it), interleaved in one process, medians. The bar is judged on CPU time (``time.process_time``
around each run): the engine's work happens while the branches wait for their replies, so on the wall clock it
mostly hides in the latency and the gap is a few milliseconds that move with the load (the line after it shows
that ratio too). The structured reply is a plan of 11 tasks (2 KB of JSON) checked against a schema with nested
objects, enums, bounds, unique items and required fields: :func:`runner.structured.check_reply`, the call the
engine makes once per structured reply (its compiled check made once per schema, as in a run).
Run: ``python bench/structured_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import engine_overhead  # noqa: E402 - the fan-out and the provider floor, as that benchmark has them

BAR = 0.05
N = 1000

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["goal", "tasks", "risk"],
    "additionalProperties": False,
    "properties": {
        "goal": {"type": "string", "minLength": 1},
        "risk": {"enum": ["low", "medium", "high"]},
        "tasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["id", "title", "owner", "estimate_h", "priority", "depends_on"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "title": {"type": "string", "minLength": 3, "maxLength": 120},
                    "owner": {"enum": ["research", "writing", "review", "ops"]},
                    "estimate_h": {"type": "number", "exclusiveMinimum": 0, "maximum": 40},
                    "priority": {"enum": ["high", "medium", "low"]},
                    "depends_on": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
                    "notes": {"type": "string"},
                },
            },
        },
    },
}


def reply_2kb() -> str:
    owners = ["research", "writing", "review", "ops"]
    tasks = [
        {
            "id": i + 1,
            "title": f"Task {i + 1}: measure the effect of change {i} on latency",
            "owner": owners[i % 4],
            "estimate_h": 1.5 + i,
            "priority": ["high", "medium", "low"][i % 3],
            "depends_on": list(range(1, i + 1))[-2:],
            "notes": "keep the report",
        }
        for i in range(11)
    ]
    text = json.dumps({"goal": "Cut the p95 latency of the service in half", "tasks": tasks, "risk": "medium"})
    assert 1900 <= len(text.encode()) <= 2300, len(text)
    return text


def parse_cost(repeat: int) -> float:
    """Seconds per parse-and-validate of the 2 KB reply: the median of ``repeat`` batches of 200."""
    from runner.structured import check_reply

    text = reply_2kb()
    check_reply(text, SCHEMA)  # the validator is built once per schema, before the run's first reply
    per_call = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(200):
            check_reply(text, SCHEMA)
        per_call.append((time.perf_counter() - t0) / 200)
    return statistics.median(per_call)


def jsonschema_cost(repeat: int) -> float:
    """The same check through jsonschema alone (what a reply would cost without runner/schemacheck.py)."""
    from runner.structured import _validator

    text = reply_2kb()
    validator = _validator(SCHEMA)
    per_call = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(20):
            validator.is_valid(json.loads(text))
        per_call.append((time.perf_counter() - t0) / 20)
    return statistics.median(per_call)


def engine_runs(rounds: int) -> dict[str, list[float]]:
    """Wall and CPU seconds of the fan-out and of the provider floor, ``rounds`` of each, interleaved. Each is timed
    around the run alone: the workflow is loaded and compiled, and the floor's messages built, beforehand."""
    import asyncio

    from runner.engine import loop as loops
    from runner.engine.session import run_plan
    from runner.plan.compile import compile_workflow
    from runner.providers.base import CallContext
    from runner.providers.scripted import ScriptedProvider
    from runner.validate.check import load_workflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(engine_overhead.FANOUT.format(n=N, latency=engine_overhead.LATENCY_MS))
        plan = compile_workflow(load_workflow(path))
    config = plan.workflow.models["m"].config
    # the floor: as engine_overhead.provider_floor_case, the same messages a branch sends, built beforehand
    calls = [
        (
            [{"role": "system", "content": f"You are worker {i}."}, {"role": "user", "content": f"Work on item {i}."}],
            CallContext(f"fan[{i}]", "worker", {"vars": {"item": i}}),
        )
        for i in range(N)
    ]

    async def floor() -> None:
        provider = ScriptedProvider("m", config)

        async def branch(i: int) -> Any:
            messages, ctx = calls[i]
            return await provider.chat(messages, ctx)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(branch(i)) for i in range(N)]
        assert tasks[-1].result().content == f"done {N - 1}"

    out: dict[str, list[float]] = {"fan_wall": [], "fan_cpu": [], "floor_wall": [], "floor_cpu": []}
    for _ in range(rounds):
        c0 = time.process_time()
        outcome = run_plan(plan, {}, tune_gc=True)  # as runner run
        out["fan_cpu"].append(time.process_time() - c0)
        assert outcome.status == "ok", outcome.error
        out["fan_wall"].append(outcome.report()["run"]["wall_s"])  # the run's wall, as engine_overhead.py has it
        c0, t0 = time.process_time(), time.perf_counter()
        loops.run(floor, use_uvloop=True)
        out["floor_cpu"].append(time.process_time() - c0)
        out["floor_wall"].append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    runs = engine_runs(args.rounds)
    parse = parse_cost(args.rounds)
    med = {k: statistics.median(v) for k, v in runs.items()}
    wall_overhead = med["fan_wall"] - med["floor_wall"]
    cpu_overhead = med["fan_cpu"] - med["floor_cpu"]
    slow = jsonschema_cost(args.rounds)
    print(
        f"structured reply: {len(reply_2kb().encode())} bytes, parse + validate {parse * 1e6:.0f} us (median; "
        f"{slow * 1e6:.0f} us through jsonschema alone)"
    )
    print(
        f"fan-out of {N}: wall {med['fan_wall'] * 1e3:.1f} ms, provider floor {med['floor_wall'] * 1e3:.1f} ms, "
        f"engine overhead {wall_overhead * 1e3:.1f} ms wall; CPU {med['fan_cpu'] * 1e3:.1f} ms against "
        f"{med['floor_cpu'] * 1e3:.1f} ms, engine overhead {cpu_overhead * 1e3:.1f} ms CPU "
        f"(medians of {args.rounds} interleaved runs)"
    )
    for label, overhead in (("CPU", cpu_overhead), ("wall", wall_overhead)):
        if overhead <= 0:
            print(f"ratio to the {label} overhead: not measurable (the fan-out was not slower than its floor)")
            continue
        ratio = parse / overhead
        verdict = "ok" if ratio < BAR else "OVER THE BAR"
        print(f"ratio to the {label} overhead: {ratio:.2%} ({verdict}: the bar is {BAR:.0%})")


if __name__ == "__main__":
    main()
