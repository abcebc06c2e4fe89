"""Tools, the agent loop, python stages and stage policies (timeouts, retries, when, error policies)."""

from __future__ import annotations

from runner.engine.session import run_plan
from runner.errors import StageTimeout
from runner.plan.compile import compile_workflow
from runner.tools import describe_function
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests import toolbox
from tests.conftest import assert_valid_report, load_unchecked


def run(path, sets=()):
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, list(sets)))
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report, {n["id"]: n for n in report["nodes"]}


TOOLS = """\
version: 1
name: t
tools:
  slow_sync: {function: "tests.toolbox:slow_sync", timeout: 5}
  slow_async: {function: "tests.toolbox:slow_async"}
  boom: {function: "tests.toolbox:boom"}
  limited: {function: "tests.toolbox:slow_async", timeout: 0.1}
"""


def agent_with(calls: str, reply: str = "{{ tool_results | join(' | ') }}", extra: str = "") -> str:
    return (
        TOOLS
        + f"""\
models:
  m:
    provider: scripted
    turns:
      - tool_calls: {calls}
    reply: "{reply}"
  plain: {{provider: scripted, latency: {{first_token_ms: 50}}}}
agents:
  a: {{model: m, tools: [slow_sync, slow_async, boom, limited]{extra}}}
  p: {{model: plain}}
"""
    )


def test_sync_tool_runs_in_a_thread_while_the_loop_serves_other_agents(write_wf) -> None:
    # The sync tool blocks its thread until a python stage after three model calls on the other branch
    # releases it: only a loop left free by the tool can run those. (Were the tool on the loop, it would
    # wait its 10 s in vain and say so.)
    toolbox.THREADS.clear()
    toolbox.RELEASE.clear()
    path = write_wf(
        TOOLS.replace("tools:\n", 'tools:\n  blocking: {function: "tests.toolbox:wait_for_release"}\n')
        + """\
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{name: blocking, arguments: {seconds: 10}}]
    reply: "{{ tool_results | join(' | ') }}"
  plain: {provider: scripted, latency: {first_token_ms: 50}}
agents:
  a: {model: m, tools: [blocking]}
  p: {model: plain}
stages:
  - id: fan
    fanout:
      branches:
        - [{id: tooly, agent: a, input: go}]
        - - {id: s1, agent: p, input: one}
          - {id: s2, agent: p}
          - {id: s3, agent: p}
          - {id: open, python: "tests.toolbox:release"}
"""
    )
    outcome, _, spans = run(path)
    assert outcome.status == "ok", outcome.error
    assert outcome.output[0].content == "released"
    assert toolbox.THREADS == ["runner-tool_0"]
    assert spans["s3"]["end_s"] <= spans["open"]["start_s"] <= spans["tooly.tool[0.0]"]["end_s"]
    assert spans["tooly.tool[0.0]"]["kind"] == "tool"


def test_async_tools_run_in_parallel_up_to_max_parallel_tools(write_wf) -> None:
    calls = (
        "[{name: slow_async, arguments: {seconds: 0.2, label: a}},"
        " {name: slow_async, arguments: {seconds: 0.2, label: b}}]"
    )
    # in parallel the second call starts while the first runs; one at a time, only once it has ended
    parallel = write_wf(agent_with(calls) + "stages:\n  - {id: s, agent: a}\n", "par.yaml")
    outcome, _, spans = run(parallel)
    assert outcome.output.content == "a after 0.2 | b after 0.2"
    a, b = spans["s.tool[0.0]"], spans["s.tool[0.1]"]
    assert a["start_s"] <= b["start_s"] < a["end_s"]
    serial = write_wf(
        agent_with(calls, extra=", max_parallel_tools: 1") + "stages:\n  - {id: s, agent: a}\n", "ser.yaml"
    )
    outcome, _, spans = run(serial)
    assert outcome.output.content == "a after 0.2 | b after 0.2"
    a, b = spans["s.tool[0.0]"], spans["s.tool[0.1]"]
    assert a["end_s"] <= b["start_s"]


def test_tool_errors_and_timeouts_go_back_to_the_model(write_wf) -> None:
    calls = (
        "[{name: boom, arguments: {reason: bad input}}, {name: limited, arguments: {seconds: 30}},"
        " {name: nope}, {name: slow_async, arguments: {wrong: 1}}]"
    )
    path = write_wf(agent_with(calls) + "stages:\n  - {id: s, agent: a}\n")
    outcome, report, spans = run(path)
    assert outcome.status == "ok"
    assert outcome.output.content.split(" | ") == [
        "error: tool 'boom' raised ValueError: bad input",
        "error: tool 'limited' timed out after 0.1 s",
        "error: there is no tool named 'nope'; available: boom, limited, slow_async, slow_sync",
        "error: bad arguments for tool 'slow_async': slow_async() got an unexpected keyword argument 'wrong'",
    ]
    assert report["run"]["wall_s"] < 30  # the timeout cut the 30 s call short: nothing waited for it
    assert spans["s.tool[0.0]"]["status"] == "failed"
    assert spans["s.tool[0.0]"]["error"] == "error: tool 'boom' raised ValueError: bad input"


def test_max_iters_reached_fails_the_stage(write_wf) -> None:
    path = write_wf(
        TOOLS
        + """\
models:
  loop:
    provider: scripted
    turns:
      - tool_calls: [{name: slow_async, arguments: {seconds: 0}}]
      - tool_calls: [{name: slow_async, arguments: {seconds: 0}}]
      - tool_calls: [{name: slow_async, arguments: {seconds: 0}}]
agents:
  a: {model: loop, tools: [slow_async], max_iters: 2}
stages:
  - {id: s, agent: a}
"""
    )
    outcome, report, spans = run(path)
    assert outcome.status == "failed"
    assert str(outcome.error) == (
        "agent 'a' (node s) reached max_iters=2 without a final answer: raise agents.a.max_iters or check its tools"
    )
    assert spans["s"]["status"] == "failed"


def test_tool_schema_from_signature_and_docstring() -> None:
    description, parameters = describe_function(toolbox.typed)
    assert description == "Echo typed arguments."
    assert parameters == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "a name"},
            "count": {"type": "integer", "description": "how many"},
            "ratio": {"type": "number", "default": 0.5},
            "flag": {"type": "boolean", "default": False},
            "tags": {"type": "array", "items": {"type": "string"}, "default": None},
            "mode": {"enum": ["a", "b"], "default": "a"},
        },
        "additionalProperties": False,
        "required": ["name", "count"],
    }
    assert describe_function(toolbox.slow_async)[1]["properties"]["label"] == {
        "type": "string",
        "description": "What to say.",
        "default": "x",
    }


def test_tool_import_error_fails_before_any_model_call(write_wf) -> None:
    path = write_wf(
        """\
version: 1
name: t
tools:
  gone: {function: "no_such_module_xyz:fn"}
models:
  m: {provider: scripted}
agents:
  a: {model: m, tools: [gone]}
stages:
  - {id: s, agent: a}
"""
    )
    # `runner validate` reports the missing module first (tests/test_hardening_validate.py); the engine's
    # own check still stands for a workflow that skipped it.
    wf = load_unchecked(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    report = outcome.report()
    assert outcome.status == "failed"
    assert str(outcome.error) == (
        "cannot import tool 'no_such_module_xyz:fn': ModuleNotFoundError: No module named 'no_such_module_xyz'"
    )
    assert report["nodes"] == []


PLAIN = """\
version: 1
name: t
inputs:
  n: {type: integer, default: 3}
models:
  fast: {provider: scripted, reply: "r:{{ input }}", latency: {first_token_ms: 20}}
  slow: {provider: scripted, reply: "slow", latency: {first_token_ms: 3000}}
  bad:
    provider: scripted
    latency: {first_token_ms: 50}
    turns: [{fail: "{{ 'upstream broke' if vars.item == 1 else '' }}"}]
    reply: "fine {{ vars.item }}"
agents:
  f: {model: fast}
  s: {model: slow}
  b: {model: bad}
"""


def test_python_stages_sync_and_async_feed_the_data_flow(write_wf) -> None:
    path = write_wf(
        PLAIN
        + """\
stages:
  - {id: make, python: "tests.toolbox:items"}
  - id: fan
    fanout: {for_each: "{{ stages.make }}", agent: f, as: i}
    input: "{{ vars.i }}"
  - {id: loud, python: "tests.toolbox:shout", input: "{{ stages.fan | map(attribute='content') | join(',') }}",
     vars: {suffix: "!"}}
"""
    )
    outcome, _, spans = run(path, ["n=2"])
    assert outcome.status == "ok", outcome.error
    assert outcome.output.content == "R:0,R:1!"
    assert spans["make"]["kind"] == "python" and spans["loud"]["kind"] == "python"


def test_stage_timeout(write_wf) -> None:
    path = write_wf(PLAIN + "stages:\n  - {id: wait, agent: s, timeout: 0.2}\n")
    outcome, report, spans = run(path)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, StageTimeout)
    assert str(outcome.error) == "stage 'wait' timed out after 0.2 s"
    # not before its timeout (less uvloop's clock, which counts whole milliseconds and so may fire up to 1 ms early),
    # and not after the model's 3 s: the timeout ended the call
    assert 0.199 <= report["run"]["wall_s"] < 3
    # stopped by its own timeout: failed with it, not "cancelled" (issue 14; tests/test_hardening_report.py)
    wait = spans["wait"]
    assert (wait["status"], wait["timeout_s"], wait["error"]) == ("failed", 0.2, "stage 'wait' timed out after 0.2 s")


def test_run_timeout(write_wf) -> None:
    path = write_wf(PLAIN.replace("name: t\n", "name: t\ntimeout: 0.15\n") + "stages:\n  - {id: wait, agent: s}\n")
    outcome, report, _ = run(path)
    assert outcome.status == "failed"
    assert str(outcome.error) == "the run timed out after 0.15 s (the workflow's 'timeout')"
    assert report["run"]["wall_s"] < 3  # not after the model's 3 s: the timeout ended the call


def test_stage_retry_runs_the_stage_again(write_wf) -> None:
    toolbox.CALLS.clear()
    path = write_wf(
        PLAIN + "stages:\n  - {id: f, python: 'tests.toolbox:flaky', input: a, retry: {max_attempts: 3, "
        "initial_delay: 0.01}}\n"
    )
    outcome, _, spans = run(path)
    assert outcome.status == "ok", outcome.error
    assert outcome.output.content == "ok after 3"
    toolbox.CALLS.clear()
    path = write_wf(
        PLAIN + "stages:\n  - {id: f, python: 'tests.toolbox:flaky', input: b, retry: {max_attempts: 2, "
        "initial_delay: 0.01}}\n",
        "two.yaml",
    )
    outcome, _, _ = run(path)
    assert outcome.status == "failed"
    assert str(outcome.error) == ("python stage 'f' (tests.toolbox:flaky) raised ConnectionError: flaky failure 2")


def test_when_skips_a_stage_and_prev_passes_through(write_wf) -> None:
    path = write_wf(
        PLAIN
        + """\
stages:
  - {id: one, agent: f, input: x}
  - {id: maybe, agent: f, when: "{{ inputs.n > 5 }}"}
  - {id: last, agent: f, input: "{{ prev.content }} {{ stages.maybe is none }}"}
"""
    )
    outcome, _, spans = run(path)
    assert outcome.output.content == "r:r:x True"
    assert spans["maybe"]["status"] == "skipped"
    assert spans["maybe"]["reason"] == "when was False"
    outcome, _, spans = run(path, ["n=9"])
    assert outcome.output.content == "r:r:r:x False"


def test_collect_keeps_going_and_marks_failed_branches(write_wf) -> None:
    path = write_wf(
        PLAIN
        + """\
stages:
  - id: fan
    fanout: {for_each: [0, 1, 2], agent: b, on_error: collect}
  - id: after
    agent: f
    input: "{% for o in stages.fan %}{{ o.error or o.content }};{% endfor %}"
"""
    )
    outcome, _, spans = run(path)
    assert outcome.status == "ok"
    assert outcome.output.content == "r:fine 0;model 'bad' (scripted) failed: upstream broke;fine 2;"
    assert spans["fan[1]"]["status"] == "failed"
    assert spans["fan"]["status"] == "ok" and spans["fan"]["failed_branches"] == 1


def test_fail_fast_cancels_siblings_and_deep_branches_at_once(write_wf) -> None:
    path = write_wf(
        PLAIN
        + """\
stages:
  - id: top
    fanout:
      branches:
        - - id: inner
            fanout:
              for_each: [a, b]
              stages:
                - id: deep
                  fanout: {for_each: [1, 2, 3], agent: s}
        - [{id: failing, agent: b, vars: {item: 1}}]
"""
    )
    outcome, report, spans = run(path)
    assert outcome.status == "failed"
    assert str(outcome.error) == "model 'bad' (scripted) failed: upstream broke"
    assert report["run"]["wall_s"] < 3  # not the 3 s of the slow branches: they were cancelled, not awaited
    deep = [n for n in spans.values() if ".deep[" in n["id"]]
    assert len(deep) == 6 and all(n["status"] == "cancelled" for n in deep)
    assert spans["failing"]["status"] == "failed"
    assert spans["top"]["status"] == "failed"
