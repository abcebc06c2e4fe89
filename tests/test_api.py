"""The public Python API (issue 15, item 4): ``runner.load``, ``check``, ``run``, ``arun`` and ``stream``, the
``Result``, events as they happen, and the provider and transport seams. A library call leaves the host process
as it found it: no signal handler, the same collector settings and loop policy, nothing printed."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import runner
from tests import api_tools
from tests.conftest import LOOPS, ROOT, assert_valid_report

pytestmark = pytest.mark.timeout(60)

FAST = """\
version: 1
name: fast
inputs:
  topic: {type: string, default: uvloop}
models:
  m:
    provider: scripted
    reply: "{{ agent.name }} on {{ input }}: one two three four"
    latency: {first_token_ms: 1, tokens_per_second: 1000}
agents:
  writer: {model: m}
stages:
  - id: fan
    input: "{{ inputs.topic }} {{ vars.item }}"
    fanout: {for_each: [a, b, c], as: item, agent: writer}
  - id: skipped
    when: "{{ inputs.topic == 'never' }}"
    python: "tests.api_tools:count"
  - id: counted
    python: "tests.api_tools:count"
  - id: last
    agent: writer
    input: "{{ stages.fan | length }} notes"
"""

SLOW = """\
version: 1
name: slow
models:
  m: {provider: scripted, reply: "too late", latency: {first_token_ms: 30000}}
agents:
  writer: {model: m}
stages:
  - id: first
    python: "tests.api_tools:count"
  - id: fan
    input: "{{ vars.item }}"
    fanout: {for_each: [a, b, c], as: item, agent: writer}
"""

BROKEN = """\
version: 1
name: broken
models:
  m: {provider: scripted}
agents:
  writer: {model: m}
stages:
  - {id: a, agent: writr}
  - {id: b, agent: writer, input: "{{ stages.c.content }}"}
"""

REMOTE = """\
version: 1
name: remote
models:
  main:
    provider: openai
    base_url: http://model.test/v1
    model: test-model
    api_key_env: RUNNER_API_TEST_KEY
    stream: {stream}
agents:
  writer: {model: main, sys_prompt: "You write about {{ inputs.topic }}."}
inputs:
  topic: {type: string, default: transports}
stages:
  - {id: hello, agent: writer, input: "Say hello."}
"""


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _tool_threads_gone() -> Iterator[None]:
    """A run's pool for python stages is shut down without waiting (a sync call cannot be killed), so its idle
    threads exit a moment after the run; wait for them, so that tests counting threads later are not misled."""
    import threading

    yield
    for thread in threading.enumerate():
        if thread.name.startswith("runner-tool"):
            thread.join(10)


@pytest.fixture
def host_gc() -> Iterator[None]:
    """Unusual collector settings, as a host program may have, put back afterwards."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(555, 7, 9)
    yield
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def host_state() -> dict[str, Any]:
    """What a library call must leave as it found it."""
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    return {
        "SIGINT": signal.getsignal(signal.SIGINT),
        "SIGTERM": signal.getsignal(signal.SIGTERM),
        "wakeup_fd": wakeup,
        "gc_threshold": gc.get_threshold(),
        "gc_enabled": gc.isenabled(),
        "gc_frozen": gc.get_freeze_count(),
        "loop_policy": asyncio.get_event_loop_policy(),
    }


# -- load and check ---------------------------------------------------------------------------------------------


def test_load_takes_a_path_or_the_yaml_text(fast: Path) -> None:
    for source in (fast, str(fast)):
        wf = runner.load(source)
        assert isinstance(wf, runner.Workflow)
        assert (wf.name, wf.file) == ("fast", str(fast))
    for source in (FAST, FAST.encode()):
        wf = runner.load(source)
        assert (wf.name, wf.file) == ("fast", "<string>")  # text is named as Python's compile() names it
        assert [s.id for s in wf.stages] == ["fan", "skipped", "counted", "last"]
    with pytest.raises(TypeError) as caught:
        runner.load(42)  # type: ignore[arg-type]
    assert str(caught.value) == "a workflow is a path or YAML text, not int"


def test_load_raises_spec_error_with_every_problem_located() -> None:
    with pytest.raises(runner.SpecError) as caught:
        runner.load(BROKEN)
    lines = [
        "<string>:8:20: error: stage 'a' uses agent 'writr', which is not defined [unknown-agent]",
        "<string>:9:39: error: stages.c: there is no stage 'c' [unknown-stage]",
    ]
    assert [d.format_line() for d in caught.value.diagnostics] == lines
    assert [d.hint for d in caught.value.diagnostics] == ["did you mean 'writer'?", "defined stages: a, b"]
    assert str(caught.value) == "\n".join(lines)
    assert list(caught.value.diagnostics) == runner.check(BROKEN)


def test_check_returns_diagnostics_and_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    problems = runner.check(path)
    assert all(isinstance(d, runner.Diagnostic) for d in problems)
    assert [(d.file, d.line, d.column, d.rule) for d in problems] == [
        (str(path), 8, 20, "unknown-agent"),
        (str(path), 9, 39, "unknown-stage"),
    ]
    assert runner.check(FAST) == []
    (missing,) = runner.check(tmp_path / "missing.yaml")
    assert (
        missing.format_line()
        == f"{tmp_path / 'missing.yaml'}:1:1: error: cannot read the file: No such file or directory [io]"
    )


def test_warnings_do_not_stop_load() -> None:
    idle = FAST.replace("  writer: {model: m}\n", "  writer: {model: m}\n  idle: {model: m}\n")
    (warning,) = runner.check(idle)
    assert warning.format_line() == "<string>:12:3: warning: agent 'idle' is not used by any stage [unused-agent]"
    assert runner.load(idle).name == "fast"


def test_load_offline_replaces_the_remote_models() -> None:
    text = REMOTE.replace("{stream}", "false")
    assert runner.load(text).models["main"].provider == "openai"
    assert runner.load(text, offline=True).models["main"].provider == "scripted"


def test_load_and_check_import_neither_asyncio_nor_the_http_stack() -> None:
    code = (
        "import sys, runner; runner.check('workflows/quickstart.yaml'); runner.load('workflows/quickstart.yaml'); "
        "print(','.join(m for m in ('asyncio', 'httpx', 'aiohttp', 'numpy', 'uvloop') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert (proc.stdout, proc.stderr) == ("\n", "")


# -- run, in a script -------------------------------------------------------------------------------------------


def test_run_in_a_script(fast: Path, host_gc: None, capfd: pytest.CaptureFixture[str]) -> None:
    before = host_state()
    result = runner.run(fast, {"topic": "httpx"})
    assert host_state() == before
    assert capfd.readouterr() == ("", "")  # a library prints nothing
    assert (result.status, result.ok, result.error) == ("ok", True, None)
    assert result.output.content == "writer on 3 notes: one two three four"
    assert list(result.stages) == ["fan", "skipped", "counted", "last"]
    assert [o.content for o in result.stages["fan"]] == [
        "writer on httpx a: one two three four",
        "writer on httpx b: one two three four",
        "writer on httpx c: one two three four",
    ]
    assert result.stages["skipped"] is None  # `when` was false
    assert result.stages["counted"] == {"stages_before": 2}  # a python stage's value, as it returned it
    assert result.stages["last"] is result.output
    assert_valid_report(result.report)
    assert result.report["run"]["status"] == "ok"
    assert result.report["run"]["inputs"] == {"topic": "httpx"}
    assert result.report["run"]["loop"] == ("uvloop" if "uvloop" in LOOPS else "asyncio")
    assert {"fan[0]", "fan[1]", "fan[2]", "counted", "last"} <= {n["id"] for n in result.report["nodes"]}
    assert repr(result) == f"<Result ok in {result.wall_s:.3f} s: stages ['fan', 'skipped', 'counted', 'last']>"


def test_bad_inputs_raise_before_the_run(fast: Path) -> None:
    with pytest.raises(runner.RunnerError) as caught:
        runner.run(fast, {"topic": 3, "colour": "blue"})
    assert str(caught.value) == "input topic: expected string, got int\ninput 'colour' is not declared by the workflow"
    required = FAST.replace("topic: {type: string, default: uvloop}", "topic: {type: string}")
    with pytest.raises(runner.RunnerError) as caught:
        runner.run(required)
    assert str(caught.value) == "input topic is required: pass inputs={'topic': ...} (<string>:4:3)"
    with pytest.raises(TypeError) as caught_type:
        runner.run(fast, ["topic=x"])  # type: ignore[arg-type]
    assert str(caught_type.value) == "inputs must be a mapping of input names to values, not list"


def test_run_inside_a_running_loop_says_to_await_arun(fast: Path) -> None:
    async def main() -> None:
        runner.run(fast)

    with pytest.raises(RuntimeError) as caught:
        asyncio.run(main())
    assert (
        str(caught.value)
        == "runner.run() cannot be called from a running event loop; use `await runner.arun(...)` there"
    )


def test_ctrl_c_in_a_script_cancels_the_run_and_raises_keyboard_interrupt() -> None:
    """As asyncio.run does: the run is cancelled, its partial result reaches on_event, KeyboardInterrupt
    propagates, and the SIGINT handler is the one the script had."""
    script = f"""
import os, signal, runner
SLOW = {SLOW!r}
final = []
def on_event(event):
    if isinstance(event, runner.NodeStarted) and event.kind == "agent" and event.node == "fan[0]":
        os.kill(os.getpid(), signal.SIGINT)
    if isinstance(event, runner.RunFinished):
        final.append(event.result)
before = signal.getsignal(signal.SIGINT)
try:
    runner.run(SLOW, on_event=on_event)
except KeyboardInterrupt:
    (result,) = final
    nodes = {{n["id"]: n["status"] for n in result.report["nodes"]}}
    same = signal.getsignal(signal.SIGINT) is before
    print("KeyboardInterrupt", result.status, nodes["first"], nodes["fan[0]"], same)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert (proc.stdout, proc.stderr) == ("KeyboardInterrupt interrupted ok cancelled True\n", "")


# -- arun, inside a running loop --------------------------------------------------------------------------------


def _watched_loop(kind: str) -> Any:
    """A loop of ``kind`` that remembers every signal handler added to it."""
    if kind == "uvloop":
        import uvloop

        base: Any = uvloop.Loop
    else:
        base = asyncio.SelectorEventLoop

    class Watched(base):  # type: ignore[misc, valid-type]
        added: list[int] = []

        def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
            self.added.append(sig)
            super().add_signal_handler(sig, callback, *args)

    return Watched


@pytest.mark.parametrize("loop", LOOPS)
def test_arun_inside_a_running_loop_leaves_the_host_alone(
    fast: Path, loop: str, host_gc: None, capfd: pytest.CaptureFixture[str]
) -> None:
    loop_class = _watched_loop(loop)

    async def host() -> tuple[runner.Result, dict[str, Any], dict[str, Any]]:
        running = asyncio.get_running_loop()
        factory = running.get_task_factory()
        before = {**host_state(), "task_factory": factory, "handler": running.get_exception_handler()}
        result = await runner.arun(fast, {"topic": "anyio"})
        after = {**host_state(), "task_factory": running.get_task_factory(), "handler": running.get_exception_handler()}
        return result, before, after

    with asyncio.Runner(loop_factory=loop_class) as asyncio_runner:
        result, before, after = asyncio_runner.run(host())
    assert after == before
    assert loop_class.added == []  # no signal handler on the host's loop
    assert capfd.readouterr() == ("", "")
    assert result.status == "ok", result.error
    assert result.output.content == "writer on 3 notes: one two three four"
    assert result.report["run"]["loop"] == loop  # the host's loop, as it is
    assert_valid_report(result.report)


def test_two_workflows_run_at_once_in_one_loop(tmp_path: Path) -> None:
    """Each run's python stage waits for the other's: they finish only if both run at the same time."""

    def meeting(name: str) -> str:
        return f"version: 1\nname: {name}\nstages:\n  - {{id: meet, python: 'tests.api_tools:meet_{name[-1]}'}}\n"

    async def main() -> list[runner.Result]:
        api_tools.MEETING.update(a=asyncio.Event(), b=asyncio.Event())
        async with asyncio.timeout(20):  # a clean failure rather than a hang if they ran one after the other
            return list(await asyncio.gather(runner.arun(meeting("side_a")), runner.arun(meeting("side_b"))))

    first, second = asyncio.run(main())
    assert (first.status, second.status) == ("ok", "ok")
    assert (first.output.content, second.output.content) == ("a met b after ''", "b met a after ''")
    assert first.report["run"]["id"] != second.report["run"]["id"]
    assert [n["id"] for n in first.report["nodes"]] == [n["id"] for n in second.report["nodes"]] == ["meet"]


def test_cancelling_arun_cancels_the_run_and_raises_cancelled_error(tmp_path: Path) -> None:
    """Cancellation propagates (swallowing it would break asyncio.timeout and task groups); the handler still
    gets the rest of the run's events and its partial result; no task outlives the run."""

    async def main() -> tuple[list[runner.Event], list[asyncio.Task[Any]]]:
        seen: list[runner.Event] = []
        me = asyncio.current_task()
        assert me is not None

        def on_event(event: runner.Event) -> None:
            seen.append(event)
            if isinstance(event, runner.NodeStarted) and event.node == "fan[2]":
                me.cancel()  # every branch is waiting for its model: stop now

        with pytest.raises(asyncio.CancelledError):
            await runner.arun(SLOW, on_event=on_event)
        return seen, [t for t in asyncio.all_tasks() if t is not me]

    seen, left = asyncio.run(main())
    assert left == []
    final = seen[-1]
    assert isinstance(final, runner.RunFinished)
    result = final.result
    assert result.status == "interrupted"
    assert isinstance(result.error, asyncio.CancelledError)
    assert result.stages == {"first": {"stages_before": 0}}  # what ended before the cancellation
    assert_valid_report(result.report)
    assert result.report["run"]["status"] == "interrupted"
    statuses = {n["id"]: n["status"] for n in result.report["nodes"]}
    assert statuses == {
        "first": "ok",
        "fan": "cancelled",
        "fan[0]": "cancelled",
        "fan[1]": "cancelled",
        "fan[2]": "cancelled",
    }
    assert {e.node for e in seen if isinstance(e, runner.NodeCancelled)} == {"fan", "fan[0]", "fan[1]", "fan[2]"}
    with pytest.raises(runner.RunError) as caught:
        result.raise_for_status()
    assert str(caught.value) == "the run of 'slow' was interrupted before it finished"


def test_a_timeout_around_arun_raises_timeout_error() -> None:
    async def main() -> None:
        async with asyncio.timeout(0.2):
            await runner.arun(SLOW)  # 30 s of model latency: the timeout must reach it through the run

    with pytest.raises(TimeoutError):
        asyncio.run(main())


# -- events as they happen --------------------------------------------------------------------------------------


async def _all_events(source: Any, **kwargs: Any) -> tuple[list[runner.Event], runner.Result]:
    async with runner.stream(source, **kwargs) as run:
        events = [event async for event in run]
    return events, run.result


def _per_node(events: list[runner.Event], node: str) -> list[runner.Event]:
    return [e for e in events if e.node == node]


def test_events_and_tokens_come_in_the_order_they_happened(fast: Path) -> None:
    events, result = asyncio.run(_all_events(fast))
    assert isinstance(events[-1], runner.RunFinished) and events[-1].result is result
    assert result.status == "ok"
    assert [e.at for e in events] == sorted(e.at for e in events)
    for node in ("fan[0]", "fan[1]", "fan[2]", "last"):
        mine = _per_node(events, node)
        started, *tokens, finished = mine
        assert started == runner.NodeStarted(started.at, node, "agent", "writer", "m", None)
        assert tokens and all(isinstance(t, runner.Token) and t.agent == "writer" for t in tokens)
        assert isinstance(finished, runner.NodeFinished)
        assert "".join(t.text for t in tokens) == finished.content  # type: ignore[attr-defined]
        assert finished.kind == "agent" and finished.elapsed == pytest.approx(finished.at - started.at)
        assert finished.attempts == 1 and finished.usage is not None and finished.usage.completion_tokens > 0
        assert finished.first_token is not None and started.at <= finished.first_token <= finished.at
    fan = _per_node(events, "fan")
    assert [type(e) for e in fan] == [runner.NodeStarted, runner.NodeFinished]
    branch_ends = [events.index(e) for e in events if isinstance(e, runner.NodeFinished) and e.node.startswith("fan[")]
    assert events.index(fan[0]) < min(branch_ends) and max(branch_ends) < events.index(fan[1])
    (skipped,) = _per_node(events, "skipped")
    assert skipped == runner.NodeSkipped(skipped.at, "skipped", "when was False")
    started, finished = _per_node(events, "counted")
    assert started == runner.NodeStarted(started.at, "counted", "python", None, None, "tests.api_tools:count")
    assert (type(finished), finished.kind, finished.content) == (runner.NodeFinished, "python", None)  # type: ignore[attr-defined]


def test_on_event_sees_what_the_stream_gives(fast: Path) -> None:
    def shape(events: list[runner.Event]) -> dict[str, list[str]]:
        """Each node's events in order (branches of one fan-out may end in any order from run to run)."""
        nodes: dict[str, list[str]] = {}
        for event in events:
            if not isinstance(event, runner.Token):
                nodes.setdefault(event.node, []).append(type(event).__name__)
        return nodes

    streamed, _ = asyncio.run(_all_events(fast))
    seen: list[runner.Event] = []
    result = runner.run(fast, on_event=seen.append)
    assert result.ok
    assert seen[-1] == runner.RunFinished(seen[-1].at, "", result)
    assert shape(seen) == shape(streamed)
    assert shape(seen)["fan[1]"] == ["NodeStarted", "NodeFinished"]

    async def handler(event: runner.Event) -> None:  # an async handler is awaited
        await asyncio.sleep(0)
        seen.append(event)

    seen.clear()
    asyncio.run(runner.arun(fast, on_event=handler))
    assert shape(seen) == shape(streamed)
    final = seen[-1]
    assert isinstance(final, runner.RunFinished)
    assert (
        "".join(e.text for e in seen if isinstance(e, runner.Token) and e.node == "last") == final.result.output.content
    )


class Streaming:
    """A fake model streaming ``words`` one by one, yielding to the loop between them."""

    def __init__(self, words: int) -> None:
        self.words = words

    async def chat(self, messages: Any, ctx: runner.CallContext, *, tools: Any = ()) -> runner.ChatResult:
        parts = [f"{ctx.node_id}:{i} " for i in range(self.words)]
        for part in parts:
            if ctx.on_token is not None:
                ctx.on_token(part)
            await asyncio.sleep(0)
        return runner.ChatResult("".join(parts), runner.Usage(1, self.words))

    async def aclose(self) -> None:
        raise AssertionError("runner closed a provider it was given")


WIDE = """\
version: 1
name: wide
models:
  m: {provider: scripted}
agents:
  writer: {model: m}
stages:
  - id: fan
    input: "{{ vars.item }}"
    fanout: {for_each: "{{ range(20) | list }}", as: item, agent: writer}
"""


def test_a_consumer_that_falls_behind_gets_every_token_merged_within_the_bound() -> None:
    """20 branches stream 30 deltas each (600) while the consumer reads nothing until the run has ended: the
    run is not slowed (it ends), the queue holds at most token_buffer tokens plus two per node, and no text is
    lost or reordered within a node."""

    async def slow_consumer() -> list[runner.Event]:
        async with runner.stream(WIDE, providers={"m": Streaming(30)}, token_buffer=5) as run:
            first = await anext(run)
            result = await run.wait()  # reading nothing while the run goes on: it must not wait for us
            assert result.ok and run.done
            return [first, *[e async for e in run]]

    async def fast_consumer() -> list[runner.Event]:
        async with runner.stream(WIDE, providers={"m": Streaming(30)}, token_buffer=5) as run:
            return [e async for e in run]

    for events, bounded in ((asyncio.run(slow_consumer()), True), (asyncio.run(fast_consumer()), False)):
        tokens = [e for e in events if isinstance(e, runner.Token)]
        if bounded:
            assert len(tokens) <= 5 + 2 * 20
        else:
            assert len(tokens) > 5 + 2 * 20  # keeping up, a consumer gets the deltas as they came
        for i in range(20):
            node = f"fan[{i}]"
            started, *mine, finished = _per_node(events, node)
            assert isinstance(started, runner.NodeStarted) and isinstance(finished, runner.NodeFinished)
            assert "".join(t.text for t in mine) == "".join(f"{node}:{j} " for j in range(30)) == finished.content
        assert isinstance(events[-1], runner.RunFinished) and events[-1].result.ok


def test_leaving_the_stream_early_cancels_the_run_and_keeps_its_partial_result() -> None:
    async def main() -> runner.Result:
        async with runner.stream(SLOW) as run:
            async for event in run:
                if isinstance(event, runner.NodeStarted) and event.node == "fan[0]":
                    break
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        return run.result

    result = asyncio.run(main())
    assert result.status == "interrupted"
    assert result.stages == {"first": {"stages_before": 0}}
    assert_valid_report(result.report)


def test_a_stream_is_used_inside_async_with() -> None:
    async def main() -> None:
        run = runner.stream(FAST)
        with pytest.raises(RuntimeError) as caught:
            await anext(run)
        assert str(caught.value) == "iterate a stream inside `async with runner.stream(...) as run:`"
        with pytest.raises(RuntimeError) as caught:
            run.result  # noqa: B018
        assert str(caught.value) == "the run has not ended: read the result after the `async with` block"

        async with run:
            pass  # left at once: the run is cancelled before its first step, and still has a result
        assert run.result.status == "interrupted"
        assert_valid_report(run.result.report)
        with pytest.raises(RuntimeError) as caught:
            async with run:
                pass
        assert str(caught.value) == "a RunStream runs once: call runner.stream(...) again for another run"

    asyncio.run(main())
    with pytest.raises(ValueError) as caught:
        runner.stream(FAST, token_buffer=0)
    assert str(caught.value) == "token_buffer must be at least 1, got 0"


# -- the seams: providers and transports ------------------------------------------------------------------------


class Fake:
    """A program's fake model: answers from the messages, remembers the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.closed = False

    async def chat(self, messages: Any, ctx: runner.CallContext, *, tools: Any = ()) -> runner.ChatResult:
        self.calls.append((ctx.node_id, ctx.agent, list(messages)))
        return runner.ChatResult(f"fake reply to {messages[-1]['content']}", runner.Usage(7, 4))

    async def aclose(self) -> None:
        self.closed = True


def test_a_fake_provider_replaces_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNNER_API_TEST_KEY", raising=False)  # the real provider would refuse to start
    fake = Fake()
    workflow = runner.load(REMOTE.replace("{stream}", "true"))
    for topic in ("fakes", "reuse"):  # the caller's provider serves several runs: runner never closes it
        result = runner.run(workflow, {"topic": topic}, providers={"main": fake})
        assert result.status == "ok", result.error
        assert result.output.content == "fake reply to Say hello."
    assert fake.calls == [
        (
            "hello",
            "writer",
            [{"role": "system", "content": f"You write about {t}."}, {"role": "user", "content": "Say hello."}],
        )
        for t in ("fakes", "reuse")
    ]
    assert not fake.closed
    assert result.report["totals"]["tokens_in"] == 7


def test_providers_must_name_models_and_be_providers() -> None:
    with pytest.raises(ValueError) as caught:
        runner.run(REMOTE.replace("{stream}", "true"), providers={"mian": Fake()})
    assert str(caught.value) == "providers: 'mian' is not a model of workflow 'remote' (did you mean 'main'?)"
    with pytest.raises(TypeError) as caught_type:
        runner.run(REMOTE.replace("{stream}", "true"), providers={"main": object()})
    assert (
        str(caught_type.value)
        == "providers['main'] has no chat() method (object); a provider implements runner.ChatProvider"
    )
    with pytest.raises(TypeError) as caught_type:
        runner.run(REMOTE.replace("{stream}", "true"), transport=object())  # type: ignore[arg-type]
    assert str(caught_type.value) == "transport must be an httpx.AsyncBaseTransport, not object"


class Recording(httpx.MockTransport):
    """httpx's MockTransport that counts being closed."""

    closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def _answer(stream: bool, requests: list[httpx.Request]) -> Recording:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if not stream:
            return httpx.Response(
                200,
                json={
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hello there"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 2},
                },
            )
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]},
            {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}},
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body.encode())

    return Recording(handle)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_mock_transport_serves_an_openai_compatible_model(stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_API_TEST_KEY", "sk-test-0123456789")
    requests: list[httpx.Request] = []
    transport = _answer(stream, requests)
    tokens: list[str] = []
    result = runner.run(
        REMOTE.replace("{stream}", str(stream).lower()),
        transport=transport,
        on_event=lambda e: tokens.append(e.text) if isinstance(e, runner.Token) else None,
    )
    assert result.status == "ok", result.error
    assert result.output.content == "Hello there"
    # Deltas that arrive together (one body here) reach the consumer as one Token: the text is what counts.
    assert "".join(tokens) == "Hello there"
    (request,) = requests
    assert str(request.url) == "http://model.test/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test-0123456789"
    body = json.loads(request.content)
    assert (body["model"], body["stream"]) == ("test-model", stream)
    assert body["messages"] == [
        {"role": "system", "content": "You write about transports."},
        {"role": "user", "content": "Say hello."},
    ]
    assert transport.closed == 0  # the caller's transport: runner's client closed its own wrapper only
    assert "sk-test-0123456789" not in json.dumps(result.report)
    assert result.report["models"]["main"]["requests"] == 1


# -- the result -------------------------------------------------------------------------------------------------


def test_result_writes_its_report_to_a_folder(fast: Path, tmp_path: Path) -> None:
    result = runner.run(fast)
    paths = result.write_report(tmp_path / "out" / "reports", formats=["json", "markdown", "trace"])
    stamp = result.report["run"]["started_at"]
    base = "fast-" + stamp[:19].replace("-", "").replace(":", "") + "." + stamp[20:23] + "Z"
    assert [p.name for p in paths] == [f"{base}.json", f"{base}.md", f"{base}.trace.json"]
    assert json.loads(paths[0].read_text(encoding="utf-8")) == json.loads(json.dumps(result.report))
    assert paths[1].read_text(encoding="utf-8").startswith("# ")
    assert [p.name for p in result.write_report(tmp_path / "default")] == [f"{base}.json"]  # report.formats
    with pytest.raises(ValueError) as caught:
        result.write_report(tmp_path, formats=["pdf"])
    assert str(caught.value) == "unknown report format 'pdf': choose among json, markdown, trace, html"
    with pytest.raises(TypeError) as caught_type:
        result.write_report(tmp_path, formats="html")
    assert str(caught_type.value) == "formats must be a list of format names, not the string 'html'"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(runner.RunError) as caught_run:
        result.write_report(blocker)
    assert str(caught_run.value) == f"could not use {blocker}: it is a file, not a folder"


def test_a_failed_run_is_a_result_and_raise_for_status_raises_its_error() -> None:
    failing = (
        "version: 1\nname: failing\nstages:\n  - {id: first, python: 'tests.api_tools:count'}\n"
        "  - {id: boom, python: 'tests.api_tools:fail', input: x}\n"
    )
    result = runner.run(failing)
    assert result.status == "failed" and not result.ok
    assert isinstance(result.error, runner.RunError)
    assert str(result.error) == "python stage 'boom' (tests.api_tools:fail) raised LookupError: no such thing as 'x'"
    assert result.report["run"]["error"] == str(result.error)
    assert result.stages == {"first": {"stages_before": 0}}  # the stages that ended before the failure
    assert result.output is None
    with pytest.raises(runner.RunError) as caught:
        result.raise_for_status()
    assert caught.value is result.error
    ok = runner.run(FAST)
    assert ok.raise_for_status() is ok


def test_the_cli_runs_through_the_same_session(fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run path: `runner run` goes through the Session that arun runs (plus its signals, collector and
    terminal)."""
    from runner.cli import main
    from runner.engine import session

    runs: list[str] = []
    real = session.Session.run

    async def counted(self: session.Session) -> session.RunOutcome:
        runs.append(self.plan.workflow.name)
        return await real(self)

    monkeypatch.setattr(session.Session, "run", counted)
    assert main(["run", str(fast), "--report-dir", str(tmp_path / "r"), "-q"]) == 0
    asyncio.run(runner.arun(fast))
    assert runs == ["fast", "fast"]


def test_providers_made_before_one_that_fails_to_open_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing key variable for the second model failed the run and left the first model's client open."""
    from runner.providers.openai import OpenAIChatProvider

    closed: list[str] = []
    real = OpenAIChatProvider.aclose

    async def aclose(self: OpenAIChatProvider) -> None:
        closed.append(self.name)
        await real(self)

    monkeypatch.setattr(OpenAIChatProvider, "aclose", aclose)
    monkeypatch.delenv("RUNNER_API_MISSING_KEY", raising=False)
    two = (
        "version: 1\nname: two\nmodels:\n"
        "  a: {provider: openai, base_url: 'http://model.test/v1', model: m}\n"
        "  b: {provider: openai, base_url: 'http://model.test/v1', model: m, api_key_env: RUNNER_API_MISSING_KEY}\n"
        "agents:\n  first: {model: a}\n  second: {model: b}\n"
        "stages:\n  - {id: one, agent: first, input: x}\n  - {id: two, agent: second, input: y}\n"
    )
    result = runner.run(two, transport=_answer(False, []))
    assert result.status == "failed"
    assert str(result.error) == (
        "model 'b' (m at http://model.test/v1): the environment variable RUNNER_API_MISSING_KEY (api_key_env) "
        "is not set; export it with the API key for http://model.test/v1"
    )
    assert closed == ["a"]
