"""``runner validate`` on ``assert:`` lists (issue 24): every problem a run would trip on, located (file:line:col)
with the rule of the same problem elsewhere in a workflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.validate.check import check_file

pytestmark = pytest.mark.timeout(30)

HEAD = """\
version: 1
name: checked
inputs:
  subject: {type: string}
models:
  m: {provider: scripted, reply: '{"label": "billing"}'}
agents:
  c:
    model: m
    output: {schema: {type: object, required: [label], properties: {label: {type: string}, note: {type: string}}}}
stages:
  - id: classify
    agent: c
    input: "{{ inputs.subject }}"
    assert:
"""


def problems(tmp_path: Path, *items: str, tail: str = "") -> list[str]:
    (tmp_path / "checks.py").write_text("def good(output):\n    return True\n")
    path = tmp_path / "wf.yaml"
    path.write_text(HEAD + "".join(f"      - {item}\n" for item in items) + tail)
    _, found = check_file(path)
    return [f"{p.line}:{p.column}: {p.severity}: {p.message} [{p.rule}] {p.hint}".rstrip() for p in found]


def test_a_clean_assert_list_is_clean(tmp_path: Path) -> None:
    assert (
        problems(
            tmp_path,
            '{type: equals, path: data.label, value: "{{ row.label }}"}',
            "{type: python, value: 'checks:good'}",
            "{type: regex, value: '^b'}",
            tail="assert:\n  - {type: llm-rubric, model: m, rubric: 'fits {{ output.data.label }}'}\n"
            "  - {type: latency, max: 2}\nthreshold: 0.9\n",
        )
        == []
    )


def test_a_misspelled_field_of_the_typed_output(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        '{type: equals, path: data.lable, value: "{{ row.label }}"}',
        '{type: equals, value: "{{ output.data.lable }}"}',
        '{type: contains, value: "{{ stages.classify.data.labl }}"}',
    ) == [
        "16:30: error: path data.lable: output.data.lable: no field 'lable' in output.data (the output schema of "
        "stage 'classify') [data-field] did you mean 'label'?",
        "17:35: error: output.data.lable: no field 'lable' in output.data (the output schema of stage 'classify') "
        "[data-field] did you mean 'label'?",
        "18:37: error: stages.classify.data.labl: no field 'labl' in stages.classify.data (the output schema of stage "
        "'classify') [data-field] did you mean 'label'?",
    ]


def test_names_inputs_and_stages_of_assertion_templates(tmp_path: Path) -> None:
    assert problems(tmp_path, '{type: equals, value: "{{ rows.x }}{{ inputs.subjet }}{{ stages.clasify }}"}') == [
        "16:35: error: 'rows' is not defined in an assertion of stages.classify.assert [unknown-name] did you mean "
        "'row'?",
        "16:47: error: input 'subjet' is not declared [unknown-input] did you mean 'subject'?",
        "16:66: error: stage 'clasify' does not exist [unknown-stage] did you mean 'classify'?",
    ]


def test_an_undeclared_judge_a_missing_function_a_bad_regex(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        "{type: llm-rubric, model: judgee, rubric: ok}",
        "{type: python, value: 'checks:goood'}",
        "{type: python, value: 'nowhere:f'}",
        "{type: regex, value: '[a-z'}",
        "{type: close, value: 1}",
        '{type: equals, value: "{{ output.content "}',
    ) == [
        "16:35: error: stages.classify.assert: the judge model 'judgee' is not declared under models [unknown-model] "
        "defined models: m",
        "17:39: error: module 'checks' (checks.py) does not define 'goood' (python assertion of stages.classify.assert)"
        " [unknown-function] did you mean 'good'?",
        "18:32: error: cannot find module 'nowhere' for python assertion of stages.classify.assert: no such module "
        f"[unknown-module] runner imports it from the workflow's folder ({tmp_path}) or Python's import path: create "
        "nowhere.py there, or install the package",
        "19:23: error: stages[0] (id='classify').assert[3]: regex: '[a-z' does not compile: unterminated character "
        "set at position 0 [invalid-setting] fix the pattern (Python's re syntax; in YAML, quote it with single "
        "quotes to keep backslashes)",
        "20:9: error: stages[0] (id='classify').assert[4]: close needs a tolerance [invalid-setting] add tolerance: "
        "0.01 (the largest difference allowed)",
        "21:32: error: template syntax error: unexpected end of template, expected 'end of print statement'. "
        "[template-syntax] fix the template's syntax: {{ expression }} for a value, {% ... %} for a statement",
    ]


def test_row_limits_belong_to_the_top_level_and_unknown_kinds_are_schema_errors(tmp_path: Path) -> None:
    assert problems(tmp_path, "{type: latency, max: 1}") == [
        "16:10: error: stages[0] (id='classify').assert[0]: latency limits a whole row: it goes in the top-level "
        "assert, not a stage's [invalid-setting] move it to the workflow's top-level assert list",
    ]
    (found,) = problems(tmp_path, "{type: equal, value: x}")
    assert found.startswith("16:") and "[schema]" in found and "'equal'" in found


def test_a_judge_counts_as_a_use_of_its_model(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    problems(tmp_path, "{type: llm-rubric, model: judge, rubric: ok}")
    path.write_text(path.read_text().replace("models:\n", "models:\n  judge: {provider: scripted}\n", 1))
    assert check_file(path)[1] == []  # no unused-model warning: the judge uses it


def test_a_threshold_without_assertions_and_assertions_inside_a_fanout(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "version: 1\nname: t\nmodels: {m: {provider: scripted}}\nagents: {a: {model: m}}\nstages:\n"
        "  - id: fan\n    fanout:\n      for_each: [1, 2]\n      stages:\n"
        "        - {id: inner, agent: a, assert: [{type: contains, value: x}]}\n"
        "  - {id: last, agent: a, threshold: 0.5}\n"
        "threshold: 0.9\n"
    )
    found = [f"{p.line}:{p.column}: {p.message} [{p.rule}]" for p in check_file(path)[1]]
    assert found == [
        "10:33: stages[0] (id='fan').fanout.stages[0] (id='inner'): stage 'inner' runs inside a fan-out, whose inner "
        "outputs a row does not keep [invalid-setting]",
        "11:26: stages[1] (id='last'): threshold is the share of rows that must pass an assert: list, and this stage "
        "has none [invalid-setting]",
        "12:1: the top level: threshold is the share of rows that must pass an assert: list, and the workflow has no "
        "top-level one [invalid-setting]",
    ]
