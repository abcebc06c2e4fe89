"""The scripted provider on a real event loop: replies due at their first token, streamed, counted, failed.

The usual case (a latency, no ``turns``, the reply at once) is answered without a coroutine: ``chat``
returns a future, and one timer callback renders and answers every reply due in the same millisecond.
These tests pin that it behaves as the coroutine path does (which ``tokens_per_second`` still takes).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

from runner.calls import ChatResult
from runner.config.scripted import ScriptedConfig
from runner.config.source import Loc, TemplateSrc
from runner.engine import loop as loops
from runner.errors import TemplateError
from runner.events import Recorder
from runner.providers.base import CallContext
from runner.providers.scripted import ScriptedProvider
from runner.templates import base_context

LOOPS = pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
MESSAGES = [{"role": "system", "content": "x" * 10}, {"role": "user", "content": "y" * 7}]  # 17 chars: 5 tokens


def provider(reply: str = "re: {{ input }}", **settings: Any) -> ScriptedProvider:
    return ScriptedProvider("m", ScriptedConfig(reply=TemplateSrc(reply, Loc("wf.yaml", 4, 12)), **settings))


def call(text: str = "hello", on_token: Any = None) -> CallContext:
    return CallContext("n", "a", base_context(input=text, vars={}), on_token, Recorder())


def run(main: Any, use_uvloop: bool) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 10)

    return loops.run(bounded, use_uvloop=use_uvloop)


@LOOPS
def test_a_reply_with_latency_is_a_future_answered_at_its_first_token(use_uvloop: bool) -> None:
    streamed: list[str] = []
    answered_with_the_token: list[bool] = []

    async def main() -> tuple[ChatResult, float, float, Any]:
        p = provider(first_token_ms=40)

        def on_token(text: str) -> None:
            streamed.append(text)
            # the next loop step: the reply must be answered by then, in the step its token came in
            asyncio.get_running_loop().call_soon(lambda: answered_with_the_token.append(pending.done()))

        t0 = time.perf_counter()
        pending = p.chat(MESSAGES, call(on_token=on_token))
        result = await pending
        return result, t0, time.perf_counter(), pending

    result, t0, t1, pending = run(main, use_uvloop)
    assert not inspect.iscoroutine(pending)  # no coroutine per call on the common path
    assert result.content == "re: hello"
    assert streamed == ["re: hello"]  # the whole reply at its first token
    assert answered_with_the_token == [True]
    assert result.usage.prompt_tokens == 5 and result.usage.completion_tokens == 3
    assert result.first_token_at is not None
    # never early; how late a timer fires only a clock sees: a sanity bound, 12 times the latency
    assert 0.040 <= result.first_token_at - t0 <= 0.5
    assert result.first_token_at <= t1


@LOOPS
@pytest.mark.parametrize("settings", [{}, {"tokens_per_second": 1000}], ids=["future", "coroutine"])
def test_a_reply_is_never_early(use_uvloop: bool, settings: dict) -> None:
    """uvloop's loop.time() counts whole milliseconds: a due time computed from it would end waits up to
    1 ms early. Each of these calls waits its whole latency from the moment it was made."""

    async def main() -> list[float]:
        p = provider(first_token_ms=3, **settings)
        waited = []
        for _ in range(20):
            while time.monotonic() * 1000 % 1 < 0.8:  # call late in a millisecond: the worst case
                pass
            t0 = time.perf_counter()
            result = await p.chat(MESSAGES, call())
            assert result.first_token_at is not None
            waited.append(result.first_token_at - t0)
        return waited

    assert min(run(main, use_uvloop)) >= 0.003


@LOOPS
def test_fast_and_coroutine_paths_give_the_same_reply(use_uvloop: bool) -> None:
    async def main() -> tuple[ChatResult, ChatResult]:
        fast = await provider(first_token_ms=5).chat(MESSAGES, call())
        slow = await provider(first_token_ms=5, tokens_per_second=1000).chat(MESSAGES, call())
        return fast, slow

    fast, slow = run(main, use_uvloop)
    assert (fast.content, fast.usage, fast.tool_calls) == (slow.content, slow.usage, slow.tool_calls)


@LOOPS
def test_replies_due_together_are_answered_each_with_its_own_text(use_uvloop: bool) -> None:
    async def main() -> list[ChatResult]:
        p = provider(first_token_ms=20)
        return list(await asyncio.gather(*(p.chat(MESSAGES, call(f"q{i}")) for i in range(500))))

    results = run(main, use_uvloop)
    assert [r.content for r in results] == [f"re: q{i}" for i in range(500)]


@LOOPS
def test_unstreamed_replies_have_no_first_token_time_and_send_nothing(use_uvloop: bool) -> None:
    streamed: list[str] = []

    async def main() -> ChatResult:
        return await provider(first_token_ms=5, stream=False).chat(MESSAGES, call(on_token=streamed.append))

    result = run(main, use_uvloop)
    assert result.content == "re: hello" and result.first_token_at is None and streamed == []


@LOOPS
def test_a_failing_reply_template_fails_only_its_own_call_with_the_location(use_uvloop: bool) -> None:
    async def main() -> list[Any]:
        p = provider("{{ input }}-{{ vars.missing }}", first_token_ms=5)
        bad = p.chat(MESSAGES, call())
        ctx = call()
        ctx.template_vars["vars"]["missing"] = "here"
        good = p.chat(MESSAGES, ctx)
        return list(await asyncio.gather(bad, good, return_exceptions=True))

    bad, good = run(main, use_uvloop)
    assert isinstance(bad, TemplateError)
    assert str(bad).startswith("wf.yaml:4:12: template error: ")
    assert "missing" in str(bad)
    assert isinstance(good, ChatResult) and good.content == "hello-here"


@LOOPS
def test_a_failing_stream_sink_fails_its_call_and_the_others_are_answered(use_uvloop: bool) -> None:
    def broken(text: str) -> None:
        raise BrokenPipeError("terminal closed")

    async def main() -> list[Any]:
        p = provider(first_token_ms=5)
        calls = [p.chat(MESSAGES, call(on_token=broken)), p.chat(MESSAGES, call())]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    failed, answered = run(main, use_uvloop)
    assert isinstance(failed, BrokenPipeError)
    assert isinstance(answered, ChatResult) and answered.content == "re: hello"


class Watched(str):
    """Text that notes each time it is printed (rendered)."""

    printed: list[str] = []

    def __str__(self) -> str:
        Watched.printed.append(str.__str__(self))
        return str.__str__(self)


@LOOPS
def test_a_cancelled_call_is_skipped_and_its_neighbours_are_answered(use_uvloop: bool) -> None:
    Watched.printed = []

    async def main() -> tuple[Any, ChatResult]:
        p = provider("{{ input }}", first_token_ms=20)
        cancelled = p.chat(MESSAGES, call(Watched("dropped")))
        kept = p.chat(MESSAGES, call(Watched("kept")))
        assert isinstance(cancelled, asyncio.Future)
        cancelled.cancel()
        return cancelled, await kept

    cancelled, kept = run(main, use_uvloop)
    assert cancelled.cancelled()
    assert kept.content == "kept"
    assert Watched.printed == ["kept"]  # a cancelled call's reply is never made


def test_providers_made_per_run_share_their_compiled_templates() -> None:
    """Compiling a template costs about a millisecond: a provider made for each run must not pay it inside
    the run's wall time."""
    assert provider("{{ input }}!")._reply is provider("{{ input }}!")._reply
    assert provider("{{ input }}!")._reply is not provider("{{ input }}?")._reply


@LOOPS
def test_the_reply_is_rendered_at_its_first_token(use_uvloop: bool) -> None:
    """A model makes its reply during its latency: the reply template sees the context as it is then."""

    async def main() -> ChatResult:
        ctx = call("before")
        pending = provider("{{ input }}", first_token_ms=10).chat(MESSAGES, ctx)
        assert isinstance(ctx.template_vars, dict)
        ctx.template_vars["input"] = "after"
        return await pending

    assert run(main, use_uvloop).content == "after"


@LOOPS
def test_without_latency_the_reply_is_immediate(use_uvloop: bool) -> None:
    async def main() -> tuple[ChatResult, list[bool]]:
        loop_turned: list[bool] = []
        asyncio.get_running_loop().call_soon(loop_turned.append, True)
        result = await provider().chat(MESSAGES, call())
        return result, list(loop_turned)  # as it was when the reply came: the loop had not turned

    result, loop_turned = run(main, use_uvloop)
    assert result.content == "re: hello" and loop_turned == []
