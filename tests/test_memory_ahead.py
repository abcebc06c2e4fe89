"""Snapshots made ahead: started in the background once the context passes the ratio of the budget, so
the turn that goes over budget does not wait for a summary call.

Every scenario runs in one event loop (the background task belongs to it). Token figures use the approx
counter: a message costs ceil(characters / 4) + 3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runner.calls import ChatResult
from runner.config.memory import WorkingMemoryConfig
from runner.events import Recorder
from runner.memory.policy import memory_notes, with_notes
from runner.memory.summary import SUMMARY_INSTRUCTIONS
from runner.memory.tokens import ApproxCounter
from runner.memory.working import WorkingMemory, provider_summarizer
from runner.providers.base import CallContext, Message

pytestmark = pytest.mark.timeout(10)

T = TypeVar("T")
COUNT = ApproxCounter()
SYSTEM: Message = {"role": "system", "content": "s" * 16}  # 7 tokens


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop
except ImportError:  # uvloop is not built for Windows; the engine falls back to asyncio there too
    pass
else:
    LOOPS["uvloop"] = uvloop.new_event_loop
_loop_factory: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def event_loop_kind(request: pytest.FixtureRequest) -> str:
    """Every scenario here runs on asyncio's loop and on uvloop (the engine's)."""
    _loop_factory[0] = LOOPS[request.param]
    return str(request.param)


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_loop_factory[0]) as runner:
        return runner.run(asyncio.wait_for(coro, 5))


def text(role: str, tokens: int) -> Message:
    return {"role": role, "content": "x" * (4 * (tokens - 3))}


def tokens(messages: list[Message]) -> int:
    return sum(COUNT.message(m) for m in messages)


class Summarizer:
    """A summary call that takes ``delay`` (or, with ``gate``, until the test opens it); ``begun`` and
    ``ended`` are set when a call begins and ends, so a test waits for the call itself, not for a sleep."""

    def __init__(self, delay: float, fail_first: bool = False, gate: asyncio.Event | None = None) -> None:
        self.delay = delay
        self.fail_first = fail_first
        self.gate = gate
        self.calls = 0
        self.cancelled = 0
        self.begun = asyncio.Event()
        self.ended = asyncio.Event()

    async def __call__(self, prompt: list[Message]) -> str:
        self.calls += 1
        self.begun.set()
        try:
            await asyncio.sleep(self.delay)
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.ended.set()
        if self.fail_first and self.calls == 1:
            raise ConnectionError("summary endpoint down")
        return f"SNAP-{self.calls}"


def make(
    tmp_path: Path, summarizer: Summarizer, mode: str = "compress", recorder: Recorder | None = None
) -> WorkingMemory:
    config = WorkingMemoryConfig(
        max_total_tokens=300, keep_recent_count=2, working_summary_mode=mode, max_tool_message_tokens=64
    )
    return WorkingMemory(config, run_dir=tmp_path, agent="a", summarize=summarizer, recorder=recorder)


# system 7 + 100 + 100 + 20 + 20 = 247: over 0.75 x 300 = 225, within 300. The tail is the last two.
START = [SYSTEM, text("user", 100), text("assistant", 100), text("user", 20), text("assistant", 20)]
MORE = text("user", 60)  # 307: over budget


def test_snapshot_made_ahead_is_used_without_waiting(tmp_path: Path) -> None:
    summarizer = Summarizer(delay=0.01)
    recorder = Recorder()

    async def scenario() -> float:
        with make(tmp_path, summarizer, recorder=recorder) as memory:
            memory.extend(START)
            assert tokens(START) == 247
            assert await memory.context() == START  # within budget: sent as it is
            await summarizer.ended.wait()  # the agent's model call; the snapshot is made meanwhile
            assert summarizer.calls == 1
            memory.add(MORE)
            # the turn over budget takes the snapshot without waiting: it never gives the loop a turn
            loop_turned: list[bool] = []
            asyncio.get_running_loop().call_soon(loop_turned.append, True)
            started = time.perf_counter()
            sent = await memory.context()
            turn = time.perf_counter() - started
            assert loop_turned == []
            assert summarizer.calls == 1  # nothing more to summarise
            assert sent == [with_notes(SYSTEM, memory_notes((2, 3), "SNAP-1")), START[3], START[4], MORE]
            stats = memory.stats()
            assert (stats.summaries, stats.summaries_ahead, stats.summarised_messages) == (1, 1, 2)
            assert stats.summary_wait_seconds <= turn and 0.005 < stats.summary_seconds  # the call took 0.01 s
            return turn

    turn = run(scenario())
    (event,) = [e[3] for e in recorder.events]
    assert event is not None
    assert (event["action"], event["ahead"], event["ref"], event["messages"]) == ("summary", True, "history:2-3", 2)
    assert event["waited"] <= turn and 0.005 < event["seconds"]


def test_the_turn_waits_for_a_snapshot_not_yet_ready(tmp_path: Path) -> None:
    gate = asyncio.Event()
    summarizer = Summarizer(delay=0, gate=gate)

    async def scenario() -> list[Message]:
        with make(tmp_path, summarizer) as memory:
            memory.extend(START)
            await memory.context()
            await summarizer.begun.wait()
            memory.add(MORE)
            started = time.perf_counter()
            turn = asyncio.ensure_future(memory.context())
            for _ in range(5):  # the turn waits, however many loop turns pass, while the snapshot is not ready
                await asyncio.sleep(0)
            assert not turn.done() and summarizer.calls == 1
            gate.set()
            sent = await turn
            waited = time.perf_counter() - started
            stats = memory.stats()
            assert summarizer.calls == 1
            assert 0 < stats.summary_wait_seconds <= waited
            assert stats.summaries_ahead == 1
            return sent

    assert run(scenario())[1:] == [START[3], START[4], MORE]


def test_a_failed_snapshot_ahead_is_reported_and_made_again(tmp_path: Path) -> None:
    summarizer = Summarizer(delay=0.01, fail_first=True)
    recorder = Recorder()

    async def scenario() -> list[Message]:
        with make(tmp_path, summarizer, recorder=recorder) as memory:
            memory.extend(START)
            await memory.context()
            await summarizer.ended.wait()  # the snapshot ahead has failed
            memory.add(MORE)
            sent = await memory.context()
            assert memory.stats().summaries_ahead == 0
            return sent

    sent = run(scenario())
    assert summarizer.calls == 2
    assert sent == [with_notes(SYSTEM, memory_notes((2, 4), "SNAP-2")), START[4], MORE]
    actions = [(e[3] or {}).get("action") for e in recorder.events]
    assert actions == ["summary_failed", "summary"]
    assert recorder.events[0][3] == {
        "agent": "a",
        "action": "summary_failed",
        "error": "ConnectionError: summary endpoint down",
        "ahead": True,
    }


def test_a_snapshot_ahead_from_a_finished_loop_is_not_used(tmp_path: Path) -> None:
    summarizer = Summarizer(delay=0.05)
    with make(tmp_path, summarizer) as memory:
        memory.extend(START)
        run(memory.context())  # the loop ends, cancelling the snapshot it started
        memory.add(MORE)
        sent = run(memory.context())
    assert summarizer.calls == 2
    assert summarizer.cancelled == 1
    assert sent[1:] == [START[4], MORE]


def test_aclose_stops_a_snapshot_being_made(tmp_path: Path) -> None:
    summarizer = Summarizer(delay=30)

    async def scenario() -> None:
        idle = asyncio.all_tasks()  # this scenario's own (and run()'s): nothing in the background
        memory = make(tmp_path, summarizer)
        memory.extend(START)
        await memory.context()
        await summarizer.begun.wait()
        # aclose stops the 30 s call rather than waiting for it: it is done within a few loop turns
        closing = asyncio.ensure_future(memory.aclose())
        for _ in range(10):
            if closing.done():
                break
            await asyncio.sleep(0)
        assert closing.done()
        assert summarizer.cancelled == 1
        assert asyncio.all_tasks() == idle

    run(scenario())
    assert (tmp_path / "memory" / "a.jsonl").read_text(encoding="utf-8").count("\n") == len(START)


def test_auto_makes_no_snapshot_ahead_when_compacting_will_do(tmp_path: Path) -> None:
    summarizer = Summarizer(delay=0.01)
    call: Message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    result: Message = {"role": "tool", "tool_call_id": "c1", "content": "r" * 800}  # 204 tokens, stored later
    messages = [SYSTEM, call, result, text("user", 20), text("assistant", 20)]
    assert 225 < tokens(messages) <= 300

    async def scenario() -> None:
        idle = asyncio.all_tasks()  # this scenario's own (and run()'s): nothing in the background
        with make(tmp_path, summarizer, mode="auto") as memory:
            memory.extend(messages)
            assert await memory.context() == messages
            assert asyncio.all_tasks() == idle and summarizer.calls == 0
            memory.extend([text("user", 30), text("assistant", 30)])  # now over budget
            sent = await memory.context()
            assert memory.stats().compactions == 1
            assert tokens(sent) <= 225
            assert asyncio.all_tasks() == idle and summarizer.calls == 0

    run(scenario())


def test_auto_makes_a_snapshot_ahead_when_compacting_will_not_do(tmp_path: Path) -> None:
    summarizer = Summarizer(delay=0.01)

    async def scenario() -> None:
        with make(tmp_path, summarizer, mode="auto") as memory:
            memory.extend(START)
            await memory.context()
            await summarizer.ended.wait()
            assert summarizer.calls == 1
            memory.add(MORE)
            await memory.context()
            assert memory.stats().summaries_ahead == 1
            assert summarizer.calls == 1

    run(scenario())


def test_compact_mode_never_summarises(tmp_path: Path) -> None:
    config = WorkingMemoryConfig(max_total_tokens=300, keep_recent_count=2, working_summary_mode="compact")

    async def scenario() -> None:
        idle = asyncio.all_tasks()  # this scenario's own (and run()'s): nothing in the background
        with WorkingMemory(config, run_dir=tmp_path, agent="a", summarize=Summarizer(0)) as memory:
            memory.extend(START)
            await memory.context()
            assert asyncio.all_tasks() == idle and memory.stats().summary_calls == 0

    run(scenario())


class FakeProvider:
    """A ChatProvider that records its calls and answers with a fixed snapshot."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Message], CallContext]] = []

    async def chat(
        self, messages: Sequence[Message], ctx: CallContext, *, tools: Sequence[Mapping[str, Any]] = ()
    ) -> ChatResult:
        self.calls.append((list(messages), ctx))
        return ChatResult(content="  Goals: ship\n")

    async def aclose(self) -> None:
        return None


def test_provider_summarizer_asks_the_summary_model(tmp_path: Path) -> None:
    provider = FakeProvider()
    recorder = Recorder()
    summarize = provider_summarizer(
        provider, node_id="notes[0]", agent="analyst", recorder=recorder, template_vars={"vars": {"k": 1}}
    )
    config = WorkingMemoryConfig(max_total_tokens=300, keep_recent_count=2, working_summary_mode="compress")

    async def scenario() -> list[Message]:
        with WorkingMemory(config, run_dir=tmp_path, agent="a", summarize=summarize, summarize_ahead=False) as m:
            m.extend([*START, MORE])
            return await m.context()

    sent = run(scenario())
    ((prompt, ctx),) = provider.calls
    assert prompt[0]["content"] == SUMMARY_INSTRUCTIONS
    assert (ctx.node_id, ctx.agent, ctx.recorder) == ("notes[0]", "analyst", recorder)
    assert ctx.template_vars == {"vars": {"k": 1}, "input": prompt[1]["content"]}
    assert sent[0] == with_notes(SYSTEM, memory_notes((2, 4), "Goals: ship"))
