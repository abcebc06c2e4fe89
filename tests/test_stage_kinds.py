"""The stage-kind registry (runner/stages/): pinned to the schema's stage choices, and the only thing the
layers ask about a stage. A kind defined here, in the test, runs through `runner validate`, `runner graph`,
the engine and the report with only its module, its registry entry and its schema choice: what the README's
Development section says a new kind touches."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import subprocess
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from runner import stages as registry
from runner.config.source import Loc, TemplateSrc
from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.plan.graph import render_mermaid, render_text
from runner.stages import KINDS, Stage, kind_of
from runner.stages.base import (
    NO_POLICY,
    Block,
    BuildContext,
    EngineServices,
    GraphPart,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageRecord,
    StageShape,
    YamlPath,
    as_text,
    yaml_path,
)
from runner.validate.check import check_file
from runner.workflow import schema as workflow_schema
from tests.conftest import assert_valid_report
from tests.graph_check import assert_mermaid_well_formed

ROOT = Path(__file__).resolve().parent.parent
SCHEMA: dict[str, Any] = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())


def schema_choices(schema: Mapping[str, Any]) -> list[str]:
    """The keys of the stage ``oneOf`` (``{"required": ["agent"]}``, ...), in the schema's order."""
    (choice,) = [part for part in schema["$defs"]["stage"]["allOf"] if "oneOf" in part]
    keys = []
    for option in choice["oneOf"]:
        (key,) = option["required"]
        keys.append(key)
    return keys


def disagreements(schema: Mapping[str, Any], kinds: Mapping[str, StageKind[Any]]) -> list[str]:
    """What the schema and the registry say differently about stage kinds."""
    out = []
    choices = schema_choices(schema)
    properties = schema["$defs"]["stage"]["properties"]
    for key in choices:
        if key not in kinds:
            out.append(f"the schema offers stage kind '{key}', which the registry lacks")
    for name in kinds:
        if name not in choices:
            out.append(f"the registry's stage kind '{name}' is not a choice of the schema's stage oneOf")
        elif name not in properties:
            out.append(f"the schema's stage has no property '{name}'")
    message = next(part["x-error"] for part in schema["$defs"]["stage"]["allOf"] if "oneOf" in part)
    for name in kinds:
        if f"'{name}'" not in message:
            out.append(f"the schema's message for a stage of no kind does not name '{name}': {message}")
    return out


def test_the_registry_has_exactly_the_schemas_stage_kinds() -> None:
    assert disagreements(SCHEMA, KINDS) == []
    assert list(KINDS) == ["agent", "python", "fanout", "loop", "switch", "workflow", "approve", "ask"]
    assert sorted(KINDS) == sorted(schema_choices(SCHEMA))


def test_the_pin_fails_when_the_schema_and_the_registry_disagree() -> None:
    more = copy.deepcopy(SCHEMA)
    stage = more["$defs"]["stage"]
    next(p for p in stage["allOf"] if "oneOf" in p)["oneOf"].append({"required": ["batch"]})
    assert disagreements(more, KINDS) == ["the schema offers stage kind 'batch', which the registry lacks"]

    fewer = copy.deepcopy(SCHEMA)
    stage = fewer["$defs"]["stage"]
    choice = next(p for p in stage["allOf"] if "oneOf" in p)
    choice["oneOf"] = [o for o in choice["oneOf"] if o["required"] != ["python"]]
    del stage["properties"]["python"]
    assert disagreements(fewer, KINDS) == [
        "the registry's stage kind 'python' is not a choice of the schema's stage oneOf"
    ]

    assert disagreements(SCHEMA, {**KINDS, "group": GROUP}) == [
        "the registry's stage kind 'group' is not a choice of the schema's stage oneOf",
        "the schema's message for a stage of no kind does not name 'group': "
        "a stage needs exactly one of 'agent', 'approve', 'ask', 'fanout', 'loop', 'python', 'switch' or 'workflow'",
    ]


def test_stage_is_the_union_of_the_registrys_records() -> None:
    assert set(typing.get_args(Stage)) == {kind.record for kind in KINDS.values()}
    assert registry.BY_RECORD == {kind.record: kind for kind in KINDS.values()}


EVERY_KIND = """\
version: 1
name: kinds
models:
  m: {provider: scripted}
agents:
  a: {model: m}
stages:
  - {id: ask, agent: a}
  - {id: tidy, python: "json:dumps"}
  - id: fan
    fanout: {for_each: [1, 2], agent: a}
"""


def test_each_kind_builds_its_own_record_with_the_fields_every_stage_has(tmp_path: Path) -> None:
    path = tmp_path / "kinds.yaml"
    path.write_text(EVERY_KIND, encoding="utf-8")
    wf, problems = check_file(path)
    assert wf is not None, problems
    assert [kind_of(s).name for s in wf.stages] == ["agent", "python", "fanout"]
    common = {"id", "input", "vars", "loc", "policy", "agent"}
    for stage in wf.stages:
        kind = kind_of(stage)
        assert type(stage) is kind.record and dataclasses.is_dataclass(stage)
        assert all(hasattr(stage, name) for name in common), kind.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            stage.id = "other"  # type: ignore[misc]


# Kinds sit below the layers that ask them (runner/stages/base.py): what a kind module may import.
ALLOWED = (
    "runner.calls",
    "runner.config",
    "runner.dispatch",
    "runner.errors",
    "runner.events",
    "runner.retry",
    "runner.stages",
)
TYPING_ONLY = ("runner.templates", "runner.events")


def _runner_imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(module, imported only for type checking) for every runner import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            checking |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner"):
            yield node.module, id(node) in checking
        elif isinstance(node, ast.Import):
            yield from ((a.name, id(node) in checking) for a in node.names if a.name.startswith("runner"))


def test_stage_kinds_import_no_layer_above_them() -> None:
    files = sorted((ROOT / "runner" / "stages").glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "base.py", "agent.py", "python.py", "fanout.py"}
    for file in files:
        for module, typing_only in _runner_imports(file):
            allowed = ALLOWED + TYPING_ONLY if typing_only else ALLOWED
            assert module.startswith(allowed), f"{file.name} imports {module}"


def test_the_records_load_without_asyncio_or_jinja() -> None:
    """`runner validate` and `runner report` read the records: the kinds' run code must not weigh on them."""
    code = (
        "import sys, runner.workflow.records, runner.stages\n"
        "print(sorted(m for m in ('asyncio', 'jinja2', 'concurrent.futures') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------
# A kind of the test's own: `group` runs its stages in order as one stage (a block like issue 16's `loop`
# body, run once). Its module is the code below; it is registered and offered by the schema for one test.


@dataclasses.dataclass(frozen=True, slots=True)
class GroupStage:
    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    stages: tuple[StageRecord, ...]
    loc: Loc
    policy: StagePolicy = NO_POLICY

    agent = None


class GroupKind(StageKind[GroupStage]):
    name = "group"
    record = GroupStage

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> GroupStage:
        c = b.common(raw, path)
        inner = tuple(b.stage(s, (*path, "group", i)) for i, s in enumerate(raw["group"]))
        return GroupStage(c.id, c.input, c.vars, inner, c.loc, c.policy)

    def blocks(self, stage: GroupStage) -> tuple[Block, ...]:
        return (Block(stage.stages, ("group",), "group", exported=True),)

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Any:
        # In the report's words, one listed branch: the vocabulary it has (runner/report/analysis.py).
        node = prefix + sp.id
        text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
        engine.recorder.emit("started", node, {"kind": "fanout"})
        out = await engine.run_sequence(sp.blocks[0], stages, text, vars_, prefix)
        engine.recorder.emit("finished", node)
        return out

    def graph_label(self, sp: StagePlan) -> str:
        return f"group of {len(sp.blocks[0])} stages"

    def graph_parts(self, sp: StagePlan) -> tuple[GraphPart, ...]:
        return (GraphPart("in order", "in", plans=sp.blocks[0]),)

    def shape(self, stage: GroupStage, path: str, s: ShapeContext) -> StageShape:
        (block,) = self.blocks(stage)
        return StageShape(stage.id, path, "branches", branches=(s.block(path + yaml_path(block.path), block),))


GROUP = GroupKind()


@pytest.fixture
def group_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`group` in the registry, and in the schema as the schema of a real kind would have it."""
    schema = copy.deepcopy(SCHEMA)
    stage = schema["$defs"]["stage"]
    stage["properties"]["group"] = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/stage"}}
    next(p for p in stage["allOf"] if "oneOf" in p)["oneOf"].append({"required": ["group"]})
    monkeypatch.setitem(KINDS, "group", GROUP)
    monkeypatch.setitem(registry.BY_RECORD, GroupStage, GROUP)
    monkeypatch.setattr(workflow_schema, "load_schema", lambda name: schema)
    workflow_schema._validator.cache_clear()
    yield
    workflow_schema._validator.cache_clear()


GROUPED = """\
version: 1
name: grouped
models:
  m: {provider: scripted, reply: "{{ agent.name }}<{{ input }}>"}
agents:
  a: {model: m}
  b: {model: m}
stages:
  - {id: first, agent: a, input: start}
  - id: pair
    input: "{{ stages.first.content }}!"
    group:
      - {id: left, agent: b}
      - {id: right, agent: a, input: "{{ stages.left.content }}/{{ stages.first.content }}"}
  - {id: last, agent: b, input: "{{ stages.right.content }}|{{ prev.content }}"}
"""


def test_a_new_kind_needs_only_its_module_its_entry_and_its_schema_choice(group_kind: None, tmp_path: Path) -> None:
    path = tmp_path / "grouped.yaml"
    path.write_text(GROUPED, encoding="utf-8")
    wf, problems = check_file(path)
    assert problems == [] and wf is not None
    assert [kind_of(s).name for s in registry.walk(wf.stages)] == ["agent", "group", "agent", "agent", "agent"]

    plan = compile_workflow(wf)
    assert render_text(plan).splitlines() == [
        "grouped: 3 stages",
        "  1. first: agent a (model m, scripted)",
        "  2. pair: group of 2 stages",
        "     in order:",
        "       1. left: agent b (model m, scripted)",
        "       2. right: agent a (model m, scripted)",
        "  3. last: agent b (model m, scripted)",
    ]
    mermaid = render_mermaid(plan)
    assert_mermaid_well_formed(mermaid)
    assert "  n_pair --> n_pair_in_left" in mermaid.splitlines()

    outcome = run_plan(plan, {}, use_uvloop=False, run_dir=tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert outcome.output.content == "b<a<b<a<start>!>/a<start>>|a<b<a<start>!>/a<start>>>"
    report = outcome.report()
    assert_valid_report(report)
    assert {n["id"]: n["kind"] for n in report["nodes"]} == {
        "first": "agent",
        "pair": "fanout",
        "pair[0]": "branch",
        "left": "agent",
        "right": "agent",
        "last": "agent",
    }
    assert [step["node"] for step in report["critical_path"]["steps"]] == [
        "first",
        "pair",
        "pair[0]",
        "left",
        "right",
        "last",
    ]


def test_the_validator_walks_a_new_kinds_blocks(group_kind: None, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        GROUPED.replace("{id: left, agent: b}", "{id: left, agent: c, input: '{{ stages.last.content }}'}"),
        encoding="utf-8",
    )
    _, problems = check_file(path)
    assert [(p.line, p.column, p.rule, p.message) for p in problems] == [
        (13, 27, "unknown-agent", "stage 'left' uses agent 'c', which is not defined"),
        (
            13,
            41,
            "stage-not-ready",
            "stages.last is not available in the input of stage 'left': stage 'last' runs later",
        ),
    ]
