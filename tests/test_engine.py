"""The engine end to end through records: data flow, ordering, bounds, errors. Scripted models only."""

from __future__ import annotations

import asyncio

import pytest

from runner.engine.execute import Output
from runner.engine.session import run_plan
from runner.errors import TemplateError
from runner.plan.compile import compile_workflow
from runner.terminal import TerminalSink
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import assert_valid_report, load_unchecked


def run(path, sets=(), sink=None, use_uvloop=True, checked=True):
    wf = load_workflow(path) if checked else load_unchecked(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, list(sets)), sink=sink, use_uvloop=use_uvloop)
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report


MODELS = """\
version: 1
name: t
models:
  echo: {provider: scripted, reply: "{{ agent.name }}<{{ input }}>"}
  slow: {provider: scripted, reply: "slow:{{ input }}", latency: {first_token_ms: 120}}
  fast: {provider: scripted, reply: "fast:{{ input }}", latency: {first_token_ms: 5}}
"""


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_fanout_keeps_input_order_when_branches_finish_out_of_order(write_wf, use_uvloop) -> None:
    path = write_wf(
        MODELS
        + """\
agents:
  s: {model: slow}
  f: {model: fast}
  join: {model: echo}
stages:
  - id: fan
    input: go
    fanout:
      branches:
        - [{id: a, agent: s}]
        - [{id: b, agent: f}]
  - id: merged
    agent: join
    input: "{{ stages.fan | map(attribute='content') | join(',') }} / {{ stages.a.content }}"
"""
    )
    outcome, report = run(path, use_uvloop=use_uvloop)
    assert outcome.status == "ok"
    assert outcome.output.content == "join<slow:go,fast:go / slow:go>"
    assert report["run"]["loop"] == ("uvloop" if use_uvloop else "asyncio")
    spans = {n["id"]: n for n in report["nodes"]}
    assert spans["b"]["end_s"] < spans["a"]["end_s"]  # b finished first, yet stays second in the output


def test_for_each_vars_prev_and_default_input(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
inputs:
  items: {type: array, items: string, default: [x, y, z]}
agents:
  worker: {model: echo, sys_prompt: "I handle {{ vars.it }}", vars: {team: blue}}
  next: {model: echo}
stages:
  - id: each
    input: "{{ vars.it }}-{{ vars.team }}"
    fanout: {for_each: "{{ inputs.items }}", as: it, agent: worker}
  - id: after
    agent: next
"""
    )
    outcome, _ = run(path, sets=['items=["p", "q"]'])
    # no `input`: the previous fan-out's outputs, one per paragraph
    assert outcome.output.content == "next<worker<p-blue>\n\nworker<q-blue>>"


def test_for_each_with_stages_runs_a_pipeline_per_item(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
agents:
  e: {model: echo}
stages:
  - id: per
    fanout:
      for_each: [1, 2]
      stages:
        - {id: first, agent: e, input: "n{{ vars.item }}"}
        - {id: second, agent: e, input: "{{ prev.content }}+{{ stages.first.content }}"}
"""
    )
    outcome, report = run(path)
    assert [o.content for o in outcome.output] == ["e<e<n1>+e<n1>>", "e<e<n2>+e<n2>>"]
    ids = [n["id"] for n in report["nodes"]]
    assert {"per", "per[0].first", "per[0].second", "per[1].first", "per[1].second"} <= set(ids)


def test_nested_fanouts(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
agents:
  e: {model: echo}
stages:
  - id: outer
    fanout:
      for_each: [a, b]
      stages:
        - id: inner
          input: "{{ vars.item }}"
          fanout: {for_each: [1, 2, 3], as: n, agent: e, max_concurrency: 2}
"""
    )
    outcome, _ = run(path)
    assert [[o.content for o in inner] for inner in outcome.output] == [["e<a>"] * 3, ["e<b>"] * 3]


def test_max_concurrency_bounds_branches_in_flight(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
agents:
  w: {model: slow}
stages:
  - id: fan
    fanout: {for_each: "{{ range(6) | list }}", agent: w, max_concurrency: 2}
"""
    )
    outcome, report = run(path)
    assert outcome.status == "ok"
    branches = [n for n in report["nodes"] if n["id"].startswith("fan[")]
    events = sorted([(n["start_s"], 1) for n in branches] + [(n["end_s"], -1) for n in branches])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak == 2
    assert report["run"]["wall_s"] >= 3 * 0.12  # six 120 ms calls, two at a time
    # four branches waited for a slot: each started only once another branch had ended (span order, not a
    # threshold on the wait, which load would stretch for the first two as well)
    waited = [n for n in branches if any(m["end_s"] <= n["start_s"] for m in branches)]
    assert len(waited) == 4


def test_undefined_template_name_fails_the_run_with_its_location(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
agents:
  e: {model: echo}
stages:
  - id: one
    agent: e
    input: |
      fine
      {{ vars.nope }}
"""
    )
    outcome, report = run(path, checked=False)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, TemplateError)
    assert str(outcome.error) == f"{path}:14:7: template error: 'dict object' has no attribute 'nope'"
    assert report["run"]["error"] == str(outcome.error)


def test_for_each_must_give_a_list(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
inputs:
  n: {type: integer, default: 3}
agents:
  e: {model: echo}
stages:
  - id: fan
    fanout: {for_each: "{{ inputs.n }}", agent: e}
"""
    )
    outcome, _ = run(path, checked=False)
    assert outcome.status == "failed"
    assert str(outcome.error) == f"{path}:13:25: for_each of stage 'fan' must give a list, got int 3"


def test_templates_cannot_reach_the_environment_or_python_internals(write_wf, monkeypatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    path = write_wf(
        MODELS
        + """\
agents:
  e: {model: echo}
stages:
  - {id: one, agent: e, input: "{{ run.__class__.__mro__ }}"}
"""
    )
    outcome, _ = run(path, checked=False)
    assert outcome.status == "failed"
    assert "unsafe operation refused by the sandbox" in str(outcome.error)


def test_streamed_output_reaches_the_sink_in_order(write_wf) -> None:
    import io

    path = write_wf(
        """\
version: 1
name: t
models:
  m: {provider: scripted, reply: "one two three", latency: {tokens_per_second: 200}}
agents:
  a: {model: m}
stages:
  - {id: s1, agent: a, input: x}
  - {id: s2, agent: a}
"""
    )
    out = io.StringIO()
    sink = TerminalSink(out)
    outcome, report = run(path, sink=sink.for_node)
    sink.close()
    assert out.getvalue() == "[s1 a] one two three\n[s2 a] one two three\n"
    s1 = next(n for n in report["nodes"] if n["id"] == "s1")
    assert s1["start_s"] <= s1["first_token_s"] < s1["end_s"]
    assert s1["end_s"] - s1["first_token_s"] >= 2 / 200 * 0.9


def test_output_objects_read_like_their_content() -> None:
    out = Output("text", "a", "n", usage=__import__("runner.calls", fromlist=["Usage"]).Usage(1, 2))
    assert str(out) == "text"


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_engine_leaves_no_tasks_behind(write_wf, use_uvloop) -> None:
    """On the loop runner runs on (eager tasks where Python has them): once a run has returned, every task it
    started has ended; only the task that awaited it is left."""
    from runner.engine import loop as loops
    from runner.engine.session import execute
    from runner.events import Recorder

    path = write_wf(
        MODELS + "agents:\n  e: {model: fast}\nstages:\n  - id: f\n    fanout: {for_each: [1, 2], agent: e}\n"
    )
    plan = compile_workflow(load_workflow(path))

    async def main() -> tuple[list[Output], set[asyncio.Task[object]]]:
        outputs = await execute(plan, {}, Recorder())
        return outputs, asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    outputs, left = loops.run(main, use_uvloop=use_uvloop)
    assert [o.content for o in outputs] == ["fast:", "fast:"]
    assert left == set()


def test_listed_branches_get_the_fanout_input_even_when_it_reads_stages(write_wf) -> None:
    path = write_wf(
        MODELS
        + """\
agents:
  e: {model: echo}
stages:
  - {id: first, agent: e, input: hello}
  - id: fan
    input: "from {{ stages.first.content }}"
    fanout:
      branches:
        - [{id: b1, agent: e}]
        - [{id: b2, agent: e, input: "{{ prev }}!"}]
"""
    )
    outcome, _ = run(path)
    assert [o.content for o in outcome.output] == ["e<from e<hello>>", "e<from e<hello>!>"]


def test_the_hot_path_builds_complete_call_contexts_outputs_and_replies(write_wf) -> None:
    """call_agent and the scripted provider build these records field by field (no __init__ call, to save
    time per branch): each must equal the record built the usual way, every field set."""
    from runner.calls import ChatResult, Usage
    from runner.engine.execute import Engine
    from runner.events import Recorder
    from runner.providers.base import CallContext
    from runner.providers.scripted import ScriptedProvider

    path = write_wf(
        MODELS + "agents:\n  e: {model: fast}\nstages:\n  - id: f\n    fanout: {for_each: [1, 2], agent: e}\n"
    )
    plan = compile_workflow(load_workflow(path))
    seen: list[tuple[CallContext, ChatResult]] = []

    class Watching(ScriptedProvider):
        async def chat(self, messages, ctx, *, tools=()):  # type: ignore[no-untyped-def]
            result = await super().chat(messages, ctx, tools=tools)
            seen.append((ctx, result))
            return result

    recorder = Recorder()
    model = plan.workflow.models["fast"]
    engine = Engine(plan, {}, {"fast": Watching("fast", model.config)}, recorder)
    outputs = asyncio.run(engine.run())

    assert [o.content for o in outputs] == ["fast:", "fast:"]  # no input: the previous output, none here
    for i, (out, (ctx, result)) in enumerate(zip(outputs, sorted(seen, key=lambda s: s[0].node_id), strict=True)):
        assert ctx == CallContext(f"f[{i}]", "e", ctx.template_vars, None, recorder, 0)
        expected_usage = Usage(result.usage.prompt_tokens, result.usage.completion_tokens)
        assert result == ChatResult(result.content, expected_usage, (), result.first_token_at, 1, "stop")
        assert out == Output(result.content, "e", f"f[{i}]", expected_usage, None)


class _Counted:
    """A result whose repr is counted: a run must never format what it returns."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return "<counted>"


@pytest.mark.parametrize("use_uvloop", [True, False])
def test_a_run_never_formats_its_result(use_uvloop: bool) -> None:
    """On 3.11 and 3.12 asyncio.Runner, putting back the SIGINT handler it installed, formats the handler (and so
    the main task and its result) with %r: the records of a 10,000-branch fan-out were repr'd twice per run."""
    import signal

    from runner.engine import loop as loops

    async def main() -> _Counted:
        return _Counted()

    saved = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a script: Runner installs its own
    try:
        result = loops.run(main, use_uvloop=use_uvloop)
    finally:
        signal.signal(signal.SIGINT, saved)
    assert isinstance(result, _Counted)
    assert _Counted.reprs == 0
