"""The validator's model of template contexts agrees with the engine's (runner/engine/execute.py).

Both directions, on real runs with scripted models: what `runner validate` accepts renders at run time,
and what it refuses as a scope error does fail at run time when the checks are skipped.
"""

from __future__ import annotations

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import check_file, load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import load_unchecked

ACCEPTED = """\
version: 1
name: scopes
inputs:
  topics: {type: array, items: string, default: [a, b]}
  flag: {type: boolean, default: true}
models:
  m: {provider: scripted, reply: "{{ agent.name }}/{{ vars.tone }}/{{ input }}"}
agents:
  writer: {model: m, vars: {tone: plain}, sys_prompt: "Write in a {{ vars.tone }} tone as {{ agent.name }}."}
  critic: {model: m, vars: {tone: sharp}, sys_prompt: "Judge {{ vars.focus | default('all') }}; {{ input }}"}
stages:
  - id: plan
    agent: writer
    input: "Plan {{ inputs.topics | join(', ') }} for {{ run.name }}"
  - id: views
    vars: {tone: warm}
    fanout:
      branches:
        - - {id: draft, agent: writer, input: "{{ stages.plan.content }} {{ vars.tone }}"}
          - {id: check, agent: critic, input: "{{ stages.draft.content }}", vars: {focus: facts}}
        - - id: inner
            input: "{{ vars.tone }} {{ stages.plan.content }}"
            fanout:
              for_each: "{{ inputs.topics }}"
              as: tone
              agent: writer
  - id: per_topic
    fanout:
      for_each: "{{ inputs.topics | map('upper') | list }}"
      as: topic
      max_concurrency: 1
      stages:
        - {id: first, agent: writer, input: "{{ vars.topic }} {{ prev }}"}
        - {id: second, agent: critic, input: "{{ stages.first.content }} {{ stages.check.content }}"}
  - id: final
    agent: critic
    when: "{{ inputs.flag and stages.views | length == 2 }}"
    input: |
      {% for out in stages.per_topic %}{{ out.content }}
      {% endfor %}{{ stages.draft.content }} {{ stages.inner | length }}
"""


def test_what_validate_accepts_renders_at_run_time(write_wf) -> None:
    path = write_wf(ACCEPTED)
    _, problems = check_file(path)
    assert [p.format_line() for p in problems] == []
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.status == "ok", outcome.error
    assert outcome.output.content.startswith("critic/sharp/")


HEADER = """\
version: 1
name: refused
inputs:
  topic: {type: string, default: t}
models:
  m: {provider: scripted, reply: "{{ input }}"}
  slow: {provider: scripted, latency: {first_token_ms: 50}}
agents:
  a: {model: m}
  b: {model: m, sys_prompt: "{{ vars.focus }}"}
  z: {model: slow}
stages:
"""

REFUSED = {
    "later stage": ("stage-not-ready", "  - {id: s, agent: a, input: '{{ stages.t }}'}\n  - {id: t, agent: a}\n"),
    "parallel branch": (
        "stage-not-ready",
        "  - id: f\n    fanout:\n      branches:\n"
        "        - [{id: slow, agent: z}]\n        - [{id: other, agent: a, input: '{{ stages.slow.content }}'}]\n",
    ),
    "inside a pipeline": (
        "stage-not-ready",
        "  - id: f\n    fanout:\n      for_each: [1]\n      stages: [{id: x, agent: a}]\n"
        "  - {id: after, agent: a, input: '{{ stages.x.content }}'}\n",
    ),
    "own fan-out": (
        "stage-not-ready",
        "  - id: f\n    fanout:\n      branches: [[{id: x, agent: a, input: '{{ stages.f }}'}]]\n",
    ),
    "item name outside its fan-out": (
        "unknown-var",
        "  - id: f\n    fanout: {for_each: [1], as: n, stages: [{id: x, agent: a}]}\n"
        "  - {id: after, agent: a, input: '{{ vars.n }}'}\n",
    ),
    "item name in for_each": ("unknown-var", "  - id: f\n    fanout: {for_each: '{{ vars.item }}', agent: a}\n"),
    "sys_prompt var one caller lacks": (
        "unknown-var",
        "  - {id: s, agent: b, vars: {focus: x}}\n  - {id: t, agent: b}\n",
    ),
    "input in a stage input": ("unknown-name", "  - {id: s, agent: a, input: '{{ input }}'}\n"),
    "for_each of a string input": (
        "for-each-not-list",
        "  - id: f\n    fanout: {for_each: '{{ inputs.topic }}', agent: a}\n",
    ),
    "lazy filter": (
        "for-each-not-list",
        "  - id: f\n    fanout: {for_each: \"{{ [1] | map('string') }}\", agent: a}\n",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=lambda c: c.replace(" ", "-"))
def test_what_validate_refuses_fails_at_run_time(write_wf, case: str) -> None:
    rule, stages = REFUSED[case]
    path = write_wf(HEADER + stages)
    _, problems = check_file(path)
    assert rule in {p.rule for p in problems if p.severity == "error"}
    wf = load_unchecked(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.status == "failed"


def test_names_the_template_guards_itself_are_not_required(write_wf) -> None:
    path = write_wf(
        HEADER
        + "  - id: s\n"
        + "    agent: a\n"
        + "    input: \"{% if 'focus' in vars %}{{ vars.focus }}{% endif %}"
        + "{% if inputs.other is defined %}{{ inputs.other }}{% endif %}{{ vars.tone | default('plain') }}\"\n"
        + "  - {id: t, agent: b, input: '{{ vars.missing }}', vars: {focus: f}}\n"
    )
    _, problems = check_file(path)
    assert [p.format_line().removeprefix(f"{path}:") for p in problems] == [
        "11:3: warning: agent 'z' is not used by any stage [unused-agent]",
        "16:34: error: vars.missing is not set in the input of stage 't' [unknown-var]",
    ]
    wf = load_unchecked(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.status == "failed"
    assert "'dict object' has no attribute 'missing'" in str(outcome.error)


def test_jinja_constructs_that_bind_names_are_not_reported(write_wf) -> None:
    path = write_wf(
        HEADER.replace('  b: {model: m, sys_prompt: "{{ vars.focus }}"}\n', "").replace("  z: {model: slow}\n", "")
        + """\
  - id: s
    agent: a
    input: |
      {% macro line(text, n=1) %}{{ n }}. {{ text }} {{ varargs | length }}{% endmacro %}
      {% macro wrap() %}[{{ caller() }}]{% endmacro %}
      {% set ns = namespace(total=0) %}
      {% for k, v in dict(a=1, b=2).items() %}{{ line(k, loop.index) }}{% set ns.total = ns.total + v %}{% endfor %}
      {% set title %}{{ inputs.topic | upper }}{% endset %}
      {% with shout = title ~ '!' %}{{ shout }}{% endwith %}
      {% call wrap() %}{{ ns.total }}{% endcall %}
      {% filter lower %}{{ run.name }}{% endfilter %}{{ range(2) | list }} {{ lipsum(1) | length > 0 }}
"""
    )
    _, problems = check_file(path)
    assert [p.format_line() for p in problems] == [
        f"{path}:7:3: warning: model 'slow' is not used by any agent [unused-model]"
    ]
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.status == "ok", outcome.error
    assert outcome.output.content == "\n\n\n1. a 02. b 0\n\nT!\n[3]\nrefused[0, 1] True\n"


def test_the_message_fields_the_checks_know_are_the_engines() -> None:
    import dataclasses

    from runner.engine.execute import Output
    from runner.validate.rules.kinds import MESSAGE_FIELDS

    assert MESSAGE_FIELDS == tuple(sorted(f.name for f in dataclasses.fields(Output)))


def test_prev_types_follow_the_engine(write_wf) -> None:
    # Each template below reads prev the way its type allows; all render at run time.
    path = write_wf(
        HEADER
        + """\
  - {id: first, agent: a, input: "{{ prev is none }}"}
  - {id: second, agent: a, input: "{{ prev.content }} {{ prev.usage.prompt_tokens }}"}
  - id: fan
    fanout:
      branches:
        - [{id: x, agent: a, input: "{{ prev.upper() }} {{ prev.split() | length }}"}]
  - {id: after, agent: a, input: "{{ prev | length }} {{ prev[0].content }} {{ stages.fan.count(1) }}"}
  - {id: maybe, agent: a, when: "{{ inputs.topic == 'x' }}"}
  - {id: last, agent: z, input: "{{ prev }}"}
  - {id: judge, agent: b, vars: {focus: all}}
"""
    )
    _, problems = check_file(path)
    assert [p.format_line() for p in problems] == []
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.status == "ok", outcome.error


def test_the_fields_of_run_and_agent_the_checks_know_are_the_engines(write_wf) -> None:
    from runner.validate.rules.templating import _FIELDS

    path = write_wf(
        HEADER.replace('  b: {model: m, sys_prompt: "{{ vars.focus }}"}\n', "").replace("  z: {model: slow}\n", "")
        + "  - {id: s, agent: a, input: \"{{ run | list | sort | join(',') }}\"}\n"
    )
    wf = load_workflow(path)
    plan = compile_workflow(wf)
    assert tuple(sorted(plan.agents["a"].info)) == _FIELDS["agent"]
    outcome = run_plan(plan, resolve_inputs(wf, []))
    assert outcome.output.content == ",".join(_FIELDS["run"])
