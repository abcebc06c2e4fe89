"""A `switch` on a structured field (issue 16, item 5): `runner validate` checks its cases against the values the
field's schema lists (`enum`, `const`, a boolean), compared as the run compares them (the text `on` renders), and
warns about values with no case when there is no default. Located at the case key, and at `cases:`."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner
from runner.validate.check import check_file
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(60)

ROUTING = """\
version: 1
name: routing
models:
  m: {provider: scripted, reply: '{"label": "tech", "urgent": true, "level": 2}'}
  desk_m: {provider: scripted, reply: "{{ agent.name }}"}
agents:
  classifier:
    model: m
    output:
      schema:
        type: object
        required: [label, urgent, level]
        properties:
          label: {enum: [billing, tech, other]}
          urgent: {type: boolean}
          level: {enum: [1, 2, 3]}
  desk: {model: desk_m}
stages:
  - {id: classify, agent: classifier, input: "My invoice is wrong."}
  - id: route
    switch:
      on: "{{ stages.classify.data.label }}"
      cases:
        billing: [{id: refund, agent: desk}]
        tech: [{id: debug, agent: desk}]
      default: [{id: triage, agent: desk}]
"""


def at(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """The 1-based line and column of the n-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def problems(tmp_path: Path, text: str) -> list[tuple[int, int, str, str, str, str]]:
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    return [(p.line, p.column, p.severity, p.rule, p.message, p.hint) for p in check_file(path)[1]]


LABELS = "'billing', 'tech' or 'other' in the output schema of stage 'classify'"


def test_the_example_is_clean(tmp_path: Path) -> None:
    assert problems(tmp_path, ROUTING) == []


def test_a_misspelled_case_is_an_error_at_its_key_with_did_you_mean(tmp_path: Path) -> None:
    text = ROUTING.replace("        tech: [", "        tehc: [")
    assert problems(tmp_path, text) == [
        (
            *at(text, "tehc:"),
            "error",
            "switch-case",
            f"case 'tehc' of switch 'route' never runs: on gives stages.classify.data.label, which is one of {LABELS}",
            "did you mean 'tech'?",
        )
    ]


def test_a_case_far_from_every_value_lists_them(tmp_path: Path) -> None:
    text = ROUTING.replace("        tech: [", "        hardware: [")
    assert problems(tmp_path, text) == [
        (
            *at(text, "hardware:"),
            "error",
            "switch-case",
            "case 'hardware' of switch 'route' never runs: on gives stages.classify.data.label, which is one of "
            f"{LABELS}",
            "write one of 'billing', 'tech' or 'other' as the case",
        )
    ]


def test_values_without_a_case_are_a_warning_at_cases_when_there_is_no_default(tmp_path: Path) -> None:
    text = ROUTING.replace("      default: [{id: triage, agent: desk}]\n", "")
    assert problems(tmp_path, text) == [
        (
            *at(text, "cases:"),
            "warning",
            "switch-uncovered",
            "switch 'route' has no case for 'other', a value of stages.classify.data.label, and no default: for it "
            "no stage runs",
            "add a case for each value, or a default: [stages] that runs for the rest",
        )
    ]
    text = text.replace("        tech: [{id: debug, agent: desk}]\n", "")
    assert problems(tmp_path, text)[0][4] == (
        "switch 'route' has no case for 'tech' and 'other', values of stages.classify.data.label, and no default: "
        "for those no stage runs"
    )
    # every value has its case: nothing to say
    full = ROUTING.replace("      default: [", "        other: [")
    assert problems(tmp_path, full) == []


def test_a_wrong_case_and_uncovered_values_are_both_reported(tmp_path: Path) -> None:
    text = ROUTING.replace("      default: [{id: triage, agent: desk}]\n", "").replace("tech: [", "tehc: [")
    assert [(line, col, rule) for line, col, _, rule, _, _ in problems(tmp_path, text)] == [
        (*at(text, "cases:"), "switch-uncovered"),
        (*at(text, "tehc:"), "switch-case"),
    ]


def test_booleans_are_compared_as_a_template_writes_them(tmp_path: Path) -> None:
    """A boolean renders as True or False (Python's spelling, which Jinja writes), so the case `true:` would
    never run: an error that says how to write it."""
    on = 'on: "{{ stages.classify.data.urgent }}"'
    text = ROUTING.replace('on: "{{ stages.classify.data.label }}"', on)
    text = text.replace("billing: [", "true: [").replace("tech: [", "false: [")
    assert problems(tmp_path, text) == [
        (
            *at(text, f"{word}: ["),
            "error",
            "switch-case",
            f"case '{word}' of switch 'route' never runs: on gives stages.classify.data.urgent, which is 'True' or "
            "'False' (as a template writes them) in the output schema of stage 'classify'",
            f"did you mean '{word.capitalize()}'? A template writes a boolean as True or False; to write the cases "
            'in lower case, lower what on gives: on: "{{ stages.classify.data.urgent | lower }}"',
        )
        for word in ("true", "false")
    ]


@pytest.mark.parametrize(
    ("on", "cases"),
    [
        ("{{ stages.classify.data.urgent }}", ("True", "False")),  # a plain True key stays the word written
        ("{{ stages.classify.data.urgent | lower }}", ("true", "false")),
        ("{{ stages.classify.data.urgent|string|upper }}", ("TRUE", "FALSE")),
        (" {{stages.classify.data['level']}} ", ("2", '"1"')),  # integers: the number key or its text
        ("{{ prev.data.label }}", ("tech", "billing")),
    ],
)
def test_what_validate_accepts_is_what_the_run_picks(tmp_path: Path, on: str, cases: tuple[str, str]) -> None:
    """The cases validate accepts are the ones the run matches: the first case is the scripted reply's value."""
    text = ROUTING.replace("{{ stages.classify.data.label }}", on)
    text = text.replace("billing: [", "FIRST: [").replace("tech: [", f"{cases[1]}: [").replace("FIRST", cases[0])
    assert [p for p in problems(tmp_path, text) if p[3].startswith("switch-")] == []
    result = runner.run(text)
    assert result.status == "ok", result.error
    assert result.stages["route"].case == cases[0].strip('"')
    assert "refund" in result.stages and "debug" not in result.stages  # the first case's stage ran


def test_integer_values_are_their_digits(tmp_path: Path) -> None:
    text = ROUTING.replace("{{ stages.classify.data.label }}", "{{ stages.classify.data.level }}")
    text = text.replace("billing: [", "1: [").replace("tech: [", "4: [")
    assert problems(tmp_path, text) == [
        (
            *at(text, "4: ["),
            "error",
            "switch-case",
            "case '4' of switch 'route' never runs: on gives stages.classify.data.level, which is one of '1', '2' or "
            "'3' in the output schema of stage 'classify'",
            "write one of '1', '2' or '3' as the case",
        )
    ]


@pytest.mark.parametrize(
    "on",
    [
        "label: {{ stages.classify.data.label }}",  # text around it: the rendered value is not the field's
        "{{ stages.classify.data.label | replace('b', 'c') }}",  # a filter whose effect is not known
        "{{ stages.classify.data.label ~ '' }}",
        "{{ stages.classify.content }}",  # not a structured field
    ],
)
def test_an_on_that_is_not_the_field_alone_is_not_checked(tmp_path: Path, on: str) -> None:
    text = ROUTING.replace("{{ stages.classify.data.label }}", on).replace("tech: [", "hardware: [")
    assert [p for p in problems(tmp_path, text) if p[3].startswith("switch-")] == []


def test_a_const_and_a_ref_are_listed_values_too(tmp_path: Path) -> None:
    text = ROUTING.replace(
        "          label: {enum: [billing, tech, other]}",
        '          label: {$ref: "#/$defs/label"}\n          kind: {const: ticket}',
    )
    text = text.replace("  desk: {model: desk_m}", "        $defs: {label: {enum: [a, b]}}\n  desk: {model: desk_m}")
    text = text.replace("required: [label, urgent, level]", "required: [label, urgent, level, kind]")
    text = text.replace('"level": 2}', '"level": 2, "kind": "ticket"}').replace('"label": "tech"', '"label": "a"')
    assert [(p[0], p[1], p[3], p[5]) for p in problems(tmp_path, text)] == [
        (*at(text, "billing: ["), "switch-case", "write one of 'a' or 'b' as the case"),
        (*at(text, "tech: ["), "switch-case", "write one of 'a' or 'b' as the case"),
    ]
    kind = text.replace("{{ stages.classify.data.label }}", "{{ stages.classify.data.kind }}")
    assert [(p[0], p[1], p[3], p[5]) for p in problems(tmp_path, kind)] == [
        (*at(kind, "billing: ["), "switch-case", "write one of 'ticket' as the case"),
        (*at(kind, "tech: ["), "switch-case", "write one of 'ticket' as the case"),
    ]


def test_a_switch_on_a_fanout_items_field_inside_its_pipeline(tmp_path: Path) -> None:
    text = """\
version: 1
name: per-item
models:
  m: {provider: scripted}
agents:
  planner:
    model: m
    output:
      schema:
        type: object
        required: [tasks]
        properties:
          tasks:
            type: array
            items: {type: object, required: [kind], properties: {kind: {enum: [code, docs]}}}
  worker: {model: m}
stages:
  - {id: plan, agent: planner, input: "Plan."}
  - id: work
    fanout:
      for_each: "{{ stages.plan.data.tasks }}"
      as: task
      stages:
        - id: pick
          switch:
            on: "{{ vars.task.kind }}"
            cases:
              code: [{id: coder, agent: worker}]
              doc: [{id: writer, agent: worker}]
"""
    assert [(p[0], p[1], p[2], p[3], p[5]) for p in problems(tmp_path, text)] == [
        (
            *at(text, "cases:"),
            "warning",
            "switch-uncovered",
            "add a case for each value, or a default: [stages] that runs for the rest",
        ),
        (*at(text, "doc:"), "error", "switch-case", "did you mean 'docs'?"),
    ]


def test_runner_validate_reports_the_case_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    text = ROUTING.replace("        tech: [", "        tehc: [")
    path.write_text(text, encoding="utf-8")
    proc = run_cli("validate", str(path))
    line, column = at(text, "tehc:")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[:4] == [
        f"{path}:{line}:{column}: error: case 'tehc' of switch 'route' never runs: on gives "
        f"stages.classify.data.label, which is one of {LABELS} [switch-case]",
        f"    {line} |         tehc: [{{id: debug, agent: desk}}]",
        "       |         ^^^^",
        "       = hint: did you mean 'tech'?",
    ]


def test_a_boolean_case_under_a_filter_gets_the_plain_did_you_mean(tmp_path: Path) -> None:
    on = 'on: "{{ stages.classify.data.urgent | upper }}"'
    text = ROUTING.replace('on: "{{ stages.classify.data.label }}"', on)
    text = text.replace("billing: [", "true: [").replace("tech: [", "FALSE: [")
    assert problems(tmp_path, text) == [
        (
            *at(text, "true: ["),
            "error",
            "switch-case",
            "case 'true' of switch 'route' never runs: on gives stages.classify.data.urgent | upper, which is 'TRUE' "
            "or 'FALSE' (as a template writes them) in the output schema of stage 'classify'",
            "did you mean 'TRUE'?",
        )
    ]
