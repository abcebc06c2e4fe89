"""``runner validate`` on structured outputs (issue 16): schemas checked where they are written (inline or in a
file), the data flow of ``stages.<id>.data`` checked through every way of nesting stages (a stage kind the test
defines included), and :func:`schema_at` for rules that need a field's schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.config.openai import parse_openai_model
from runner.errors import ConfigError
from runner.validate.check import check_file, load_workflow
from runner.validate.rules.dataflow import schema_at
from tests.test_stage_kinds import group_kind  # noqa: F401 - the fixture: a stage kind of the test's own

pytestmark = pytest.mark.timeout(60)

HEAD = """\
version: 1
name: flow
models:
  m: {provider: scripted}
agents:
  router:
    model: m
    output:
      schema:
        type: object
        required: [route, items]
        properties:
          route: {enum: [billing, tech]}
          items: {type: array, items: {$ref: "#/$defs/item"}}
        $defs:
          item: {type: object, required: [name], properties: {name: {type: string}, size: {type: integer}}}
  worker: {model: m}
stages:
  - {id: route, agent: router, input: "Route it."}
"""


def problems(tmp_path: Path, text: str) -> list[tuple[int, int, str, str, str]]:
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    return [(p.line, p.column, p.severity, p.rule, p.message) for p in check_file(path)[1]]


def test_schema_at_gives_the_schema_a_template_reads(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(HEAD)
    wf = load_workflow(path)
    assert schema_at(wf, "stages.route.data.route") == {"enum": ["billing", "tech"]}
    assert schema_at(wf, "{{ stages.route.data.route }}") == {"enum": ["billing", "tech"]}
    item = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
    }
    assert schema_at(wf, "stages.route.data.items[0]") == item  # the $ref followed
    assert schema_at(wf, "stages.route.data['items'][2].size") == {"type": "integer"}
    assert schema_at(wf, "stages.route.data.nothing") is None
    assert schema_at(wf, "stages.route.content") is None
    assert schema_at(wf, "inputs.route") is None
    assert schema_at(wf, "{{ stages.route.data.route }} and more {{ x }}") is None


NESTED = (
    HEAD
    + """\
  - id: per
    fanout:
      for_each: "{{ stages.route.data.items }}"
      as: it
      stages:
        - {id: first, agent: worker, input: "{{ vars.it.nmae }} {{ stages.route.data.rout }}"}
  - id: both
    fanout:
      branches:
        - - {id: left, agent: worker, input: "{% for i in stages.route.data.items %}{{ i.siz }}{% endfor %}"}
        - - {id: right, agent: router, input: "x"}
  - {id: after, agent: worker, input: "{{ stages.right.data.items.name }}"}
"""
)


def test_reads_are_checked_in_per_item_pipelines_listed_branches_and_after_them(tmp_path: Path) -> None:
    assert problems(tmp_path, NESTED) == [
        (
            25,
            49,
            "error",
            "data-field",
            "stages.route.data.items[*].nmae: no field 'nmae' in stages.route.data.items[*] (the output schema of "
            "stage 'route')",
        ),
        (
            25,
            68,
            "error",
            "data-field",
            "stages.route.data.rout: no field 'rout' in stages.route.data (the output schema of stage 'route')",
        ),
        (
            29,
            88,
            "error",
            "data-field",
            "stages.route.data.items[*].siz: no field 'siz' in stages.route.data.items[*] (the output schema of "
            "stage 'route')",
        ),
        (
            31,
            43,
            "error",
            "data-field",
            "stages.right.data.items.name: stages.right.data.items is a list, which has no field 'name' (the output "
            "schema of stage 'right')",
        ),
    ]


def test_a_new_stage_kinds_blocks_are_walked(group_kind: None, tmp_path: Path) -> None:  # noqa: F811
    text = (
        HEAD + '  - id: pair\n    group:\n      - {id: inner, agent: worker, input: "{{ stages.route.data.roote }}"}\n'
    )
    assert problems(tmp_path, text) == [
        (
            22,
            47,
            "error",
            "data-field",
            "stages.route.data.roote: no field 'roote' in stages.route.data (the output schema of stage 'route')",
        )
    ]


def test_a_system_prompt_reading_structured_data_is_checked_for_its_callers(tmp_path: Path) -> None:
    text = (
        HEAD.replace(
            "  worker: {model: m}", '  worker: {model: m, sys_prompt: "Route: {{ stages.route.data.route.name }}"}'
        )
        + '  - {id: work, agent: worker, input: "go"}\n'
    )
    assert problems(tmp_path, text) == [
        (
            17,
            45,
            "error",
            "data-field",
            "stages.route.data.route.name: stages.route.data.route is text, which has no field 'name' (the output "
            "schema of stage 'route')",
        )
    ]


def test_guarded_optional_reads_and_open_schemas_are_not_reported(tmp_path: Path) -> None:
    text = (
        HEAD
        + """\
  - id: a
    agent: worker
    input: >-
      {% for i in stages.route.data.items %}{{ i.size | default(0) }}{% if i.size is defined %}{{ i.size }}{% endif %}
      {{ i.name.upper() }}{% endfor %} {{ stages.route.data.items | length }} {{ stages.route.data.items[0].name }}
  - id: open
    agent: worker
    output: {schema: {type: object, additionalProperties: true, properties: {a: {type: string}}, required: [a]}}
  - {id: b, agent: worker, input: "{{ stages.open.data.anything }} {{ stages.open.data.a.strip() }}"}
"""
    )
    assert problems(tmp_path, text) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "{not json",
            "agents.a.output: output.schema: the schema in s.json is not JSON: Expecting property name enclosed in "
            "double quotes at line 1, column 2",
        ),
        (
            '{"type": "objet"}',
            'agents.a.output: output.schema: the schema in s.json is not a valid JSON Schema: "objet" is not a type: '
            "use string, number, integer, boolean, object, array, null (at schema.type)",
        ),
        (
            "[1, 2]",
            "agents.a.output: output.schema: the schema in s.json: a JSON Schema is a mapping (or true/false), "
            "not list",
        ),
    ],
)
def test_a_schema_file_that_is_not_a_schema_is_reported_at_the_reference(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "s.json").write_text(content)
    text = "version: 1\nname: f\nmodels:\n  m: {provider: scripted}\nagents:\n  a:\n    model: m\n    output:\n"
    text += "      schema: s.json\nstages:\n  - {id: s, agent: a}\n"
    assert problems(tmp_path, text) == [(9, 7, "error", "invalid-setting", message)]


def _model(params: dict[str, Any]) -> dict[str, Any]:
    return {"provider": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "x", "params": params}


@pytest.mark.parametrize(
    ("params", "key", "message"),
    [
        (
            {"extra_body": {"tools": []}},
            ("params", "extra_body", "tools"),
            "params.extra_body must not set 'tools': the runner sets it",
        ),
        ({"extra_body": [1]}, ("params", "extra_body"), "params.extra_body must be a mapping, not [1]"),
        ({"n": 2}, ("params", "n"), "params.n must be 1, not 2: runner reads one choice of each reply"),
    ],
)
def test_the_parser_refuses_what_the_schema_refuses(params: dict[str, Any], key: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_openai_model(_model(params))
    assert caught.value.key == key
    assert str(caught.value) == message


def test_prev_is_the_previous_stages_structured_output_when_nothing_can_pass_another(tmp_path: Path) -> None:
    text = (
        HEAD
        + """\
  - {id: next, agent: worker, input: "{{ prev.data.rote }}"}
  - {id: maybe, agent: router, input: "x", when: "{{ inputs | length }}"}
  - {id: after_maybe, agent: worker, input: "{{ prev.data.anything }}"}
"""
    )
    assert problems(tmp_path, text) == [
        (
            20,
            42,
            "error",
            "data-field",
            "prev.data.rote: no field 'rote' in prev.data (the output schema of stage 'route')",
        )
    ]
