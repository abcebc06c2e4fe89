"""``runner.each``: a workflow over any iterable of input mappings, results as they finish (issue 17)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import runner
from tests.conftest import LOOPS, run_on
from tests.oai_server import OAIServer, Plan
from tests.test_dataset_cli import remote

pytestmark = pytest.mark.timeout(30)

WF = """\
version: 1
name: each
inputs:
  text: {type: string}
models:
  m: {provider: scripted, reply: "x"}
agents:
  a: {model: m, sys_prompt: "s"}
stages:
  - {id: only, agent: a, input: "{{ inputs.text }}"}
"""


class Gate:
    """A fake model whose replies wait for the test: it sees how many rows are in flight and which calls were
    cancelled. One instance serves every row (the batch shares a provider per model)."""

    def __init__(self) -> None:
        self.open: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()
        self.cancelled: list[str] = []
        self.most = 0
        self.changed = asyncio.Event()

    def release(self, text: str) -> None:
        self.open.setdefault(text, asyncio.Event()).set()

    async def chat(self, messages: Sequence[Any], ctx: Any, *, tools: Sequence[Any] = ()) -> runner.ChatResult:
        text = messages[-1]["content"]
        self.waiting.add(text)
        self.most = max(self.most, len(self.waiting))
        self.changed.set()
        try:
            await self.open.setdefault(text, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise
        finally:
            self.waiting.discard(text)
        return runner.ChatResult(f"reply to {text}", runner.Usage(2, 3))

    async def until(self, count: int) -> None:
        while len(self.waiting) < count:
            self.changed.clear()
            await self.changed.wait()

    async def aclose(self) -> None:
        raise AssertionError("runner closed a provider the caller gave")


@pytest.mark.parametrize("loop", LOOPS)
def test_rows_are_read_lazily_bounded_and_yielded_as_they_finish(loop: str) -> None:
    pulled: list[int] = []

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(6):
            pulled.append(i)
            yield {"text": f"t{i}"}

    async def main() -> list[tuple[int, str, Any]]:
        gate = Gate()
        got: list[tuple[int, str, Any]] = []
        results = runner.each(WF, rows(), concurrency=2, providers={"m": gate})

        async def consume() -> None:
            async for row in results:
                got.append((row.index, row.status, row.output.content))

        task = asyncio.create_task(consume())
        await gate.until(2)
        assert pulled == [0, 1]  # no row is read before a slot is free for it
        gate.release("t1")  # the second row finishes first, and is given first
        for i in (0, 2, 3, 4, 5):
            gate.release(f"t{i}")
        await task
        assert gate.most == 2
        return got

    got = run_on(loop, main())
    assert got[0] == (1, "ok", "reply to t1")
    assert sorted(got) == [(i, "ok", f"reply to t{i}") for i in range(6)]


def test_bad_rows_and_failed_runs_are_results() -> None:
    class Failing:
        async def chat(self, messages: Sequence[Any], ctx: Any, *, tools: Sequence[Any] = ()) -> runner.ChatResult:
            if messages[-1]["content"] == "boom":
                raise runner.ProviderError("model `m`: 500 from the server")
            return runner.ChatResult("fine")

        async def aclose(self) -> None:
            pass

    async def main() -> dict[int, runner.RowResult]:
        rows: list[Any] = [{"text": "ok"}, {"text": 3}, "not a mapping", {"text": "boom"}, {"text": "ok", "x": 1}]
        return {r.index: r async for r in runner.each(WF, rows, providers={"m": Failing()})}

    got = asyncio.run(main())
    assert {i: (r.status, r.error) for i, r in got.items()} == {
        0: ("ok", None),
        1: ("failed", "row 1: input text: expected string, got int"),
        2: ("failed", "row 2: a row is a mapping of input names to values, not str"),
        3: ("failed", "model `m`: 500 from the server"),
        4: ("ok", None),  # a key that is no input is ignored, as a dataset's extra column
    }
    assert got[0].line() == {
        "index": 0, "key": "0", "status": "ok", "output": "fine", "error": None,
        "tokens": {"prompt": 0, "completion": 0}, "latency_s": got[0].line()["latency_s"],
    }  # fmt: skip


def test_leaving_early_cancels_the_rows_in_flight() -> None:
    async def main() -> Gate:
        gate = Gate()
        gate.release("t0")
        async with contextlib.aclosing(
            runner.each(WF, ({"text": f"t{i}"} for i in range(10)), concurrency=3, providers={"m": gate})
        ) as results:
            async for row in results:
                assert row.index == 0
                await gate.until(3)
                break
        assert gate.waiting == set()
        return gate

    gate = asyncio.run(main())
    assert sorted(gate.cancelled) == ["t1", "t2", "t3"]


def test_one_client_per_model_its_connections_reused_from_row_to_row(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.default = Plan(content="labelled")

        async def main() -> list[runner.RowResult]:
            return [
                r async for r in runner.each(remote(server.url), ({"text": f"t{i}"} for i in range(20)), concurrency=2)
            ]

        got = asyncio.run(main())
    assert [r.status for r in got] == ["ok"] * 20
    assert server.connections <= 2  # 20 rows over the model's pool: never a client (and its pool) per row
    assert json.dumps(got[0].line()["tokens"]) == '{"prompt": 5, "completion": 3}'


def test_misuse_is_said_at_the_call() -> None:
    with pytest.raises(TypeError) as caught:
        runner.each(WF, {"text": "a"})
    assert str(caught.value) == "rows must be an iterable of input mappings, not dict"
    with pytest.raises(ValueError) as caught_value:
        runner.each(WF, [], concurrency=0)
    assert str(caught_value.value) == "concurrency must be a whole number, 1 or more, not 0"


class Held:
    """A fake model: the row with text "now" answers at once, every other row waits until cancelled."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def chat(self, messages: Sequence[Any], ctx: Any, *, tools: Sequence[Any] = ()) -> runner.ChatResult:
        if messages[-1]["content"] != "now":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return runner.ChatResult("at once")

    async def aclose(self) -> None:
        pass


def test_a_script_iterates_the_results_with_a_plain_for() -> None:
    got = sorted((r.index, r.output.content) for r in runner.each(WF, [{"text": "now"}] * 3, providers={"m": Held()}))
    assert got == [(0, "at once"), (1, "at once"), (2, "at once")]


def test_leaving_a_plain_for_early_cancels_the_rows_in_flight() -> None:
    held = Held()
    results = runner.each(WF, [{"text": "later"}, {"text": "now"}, {"text": "later"}], providers={"m": held})
    for row in results:
        assert row.index == 1
        break
    assert held.cancelled == 2  # the iterator `for` dropped is closed at once: the rows in flight are cancelled
    with pytest.raises(RuntimeError) as caught:
        iter(results)
    assert str(caught.value) == "the results of runner.each() are iterated once; call runner.each() again"


def test_a_plain_for_inside_a_running_loop_is_refused() -> None:
    async def main() -> None:
        iter(runner.each(WF, [{"text": "now"}], providers={"m": Held()}))

    with pytest.raises(RuntimeError) as caught:
        asyncio.run(main())
    assert str(caught.value) == "inside a running event loop, iterate runner.each() with `async for`"
