"""Adaptive concurrency per model (runner/dataset/adaptive.py): 429 and Retry-After halve a model's rows in
flight, sustained success adds them back one at a time, x-ratelimit-remaining-* headers are honoured."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from runner.dataset.adaptive import AdaptiveLimits
from runner.dataset.batch import Batch, RowInput
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from tests.oai_server import OAIServer, Plan
from tests.test_dataset_api import WF, Gate
from tests.test_dataset_cli import cli, folder_of

pytestmark = pytest.mark.timeout(60)


def limits(in_flight: int = 8) -> AdaptiveLimits:
    return AdaptiveLimits(["main"], 8, lambda: in_flight)


def history(adaptive: AdaptiveLimits) -> list[tuple[int, str]]:
    return [(c["limit"], c["reason"]) for c in adaptive.changes]


def test_a_429_halves_once_per_window_and_success_adds_back_one_at_a_time() -> None:
    adaptive = limits(in_flight=3)
    adaptive.answer("main", 429, {"retry-after": "2"})
    for _ in range(3):  # the answers to the three requests sent before the halving: no second halving
        adaptive.answer("main", 429, {})
    assert adaptive.allowed() == 4
    for _ in range(4 + 5 + 6 + 7 + 20):
        adaptive.answer("main", 200, {})
    assert history(adaptive) == [
        (4, "HTTP 429 with Retry-After: 2"),
        (5, "4 answers in a row without a rate limit"),
        (6, "5 answers in a row without a rate limit"),
        (7, "6 answers in a row without a rate limit"),
        (8, "7 answers in a row without a rate limit"),  # never above --concurrency
    ]
    adaptive.answer("main", 503, {"retry-after": "1"})
    assert history(adaptive)[-1] == (4, "HTTP 503 with Retry-After: 1")
    adaptive.answer("main", 500, {})  # an error without a rate limit changes nothing
    assert adaptive.allowed() == 4


def test_x_ratelimit_remaining_headers_are_honoured() -> None:
    adaptive = limits(in_flight=0)
    adaptive.answer("main", 200, {"x-ratelimit-remaining-requests": "3", "x-ratelimit-remaining-tokens": "9000"})
    assert history(adaptive) == [(3, "x-ratelimit-remaining-requests: 3")]
    for _ in range(10):  # while the server says so little is left, nothing is added back
        adaptive.answer("main", 200, {"x-ratelimit-remaining-requests": "3"})
    assert adaptive.allowed() == 3
    adaptive.answer("main", 200, {"x-ratelimit-remaining-tokens": "0"})
    assert history(adaptive)[-1] == (1, "x-ratelimit-remaining-tokens: 0")
    for _ in range(2):  # a header that is no number is ignored: one answer at 1 adds a row; at 2 it takes two
        adaptive.answer("main", 200, {"x-ratelimit-remaining-requests": "bogus"})
    assert adaptive.allowed() == 2


def test_the_batch_keeps_no_more_rows_in_flight_than_allowed(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WF)
    plan = compile_workflow(load_workflow(path))

    async def main() -> Gate:
        gate = Gate()
        async with Batch(plan, concurrency=8, providers={"m": gate}, run_dir=tmp_path) as batch:
            batch.adaptive = AdaptiveLimits(["m"], 8, lambda: batch.in_flight, batch._room.set)  # noqa: SLF001
            batch.adaptive.answer("m", 429, {})  # halved to 4 before the first row
            rows = [RowInput(i, str(i), {"text": f"t{i}"}) for i in range(12)]
            task = asyncio.create_task(batch.run(rows, lambda result: None))
            await gate.until(4)
            for _ in range(4):  # four answers without a 429: one more row may be in flight
                batch.adaptive.answer("m", 200, {})
            await gate.until(5)
            for i in range(12):
                gate.release(f"t{i}")
            await task
        return gate

    gate = asyncio.run(main())
    assert gate.most == 5


def test_a_batch_against_a_rate_limiting_server_reports_its_concurrency(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan(*[Plan(status=429, headers={"Retry-After": "0"}) for _ in range(3)])
        wf = tmp_path / "wf.yaml"
        wf.write_text(f"""\
version: 1
name: limited
inputs:
  text: {{type: string}}
models:
  main:
    provider: openai
    base_url: "{server.url}"
    model: test-model
    stream: false
    retry: {{max_attempts: 3, initial_delay: 0.01}}
agents:
  a: {{model: main, sys_prompt: "s"}}
stages:
  - {{id: label, agent: a, input: "{{{{ inputs.text }}}}"}}
""")
        data = tmp_path / "d.jsonl"
        data.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(40)))
        proc = cli("run", str(wf), "--dataset", str(data), "--concurrency", "8", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    folder = folder_of(tmp_path / "r")
    report = json.loads((folder / "report.json").read_text())
    assert [(c["model"], c["limit"], c["reason"]) for c in report["concurrency"]] == [
        ("main", 8, "the batch starts"),
        ("main", 4, "HTTP 429 with Retry-After: 0"),
        ("main", 5, "4 answers in a row without a rate limit"),
        ("main", 6, "5 answers in a row without a rate limit"),
        ("main", 7, "6 answers in a row without a rate limit"),
        ("main", 8, "7 answers in a row without a rate limit"),
    ]
    assert report["tokens"]["retries"] == 3
    assert "| at | model | rows in flight | why |" in (folder / "report.md").read_text()
