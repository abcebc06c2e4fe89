"""The inputs a stage or a fan-out gives a child workflow (issue 22), checked against the child's ``inputs:``.

The child itself is checked in its own file (``runner/validate/check.py`` reads it, its problems located there);
here the including file's side: every name given is an input of the child, every required input is given, and
every value has the declared type where the file shows it: a YAML value as written, a template by what it
gives (text, unless it is a single ``{{ expression }}``; ``{{ inputs.x }}`` has the type of this workflow's input
``x``; a fan-out's ``{{ vars.<as> }}`` that of the items of its literal ``for_each``). A value the file does not
decide (a stage's output) is checked when the run gives it, located at the include.
"""

from __future__ import annotations

from typing import Any

from runner.config.source import TemplateSrc
from runner.diagnostics import Diagnostic
from runner.stages import FanoutStage
from runner.stages.workflow import Include, WorkflowStage
from runner.templates import is_constant, simple_parts
from runner.validate.rules.common import A_TYPE, describe_value, diag, suggest
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source
from runner.workflow.document import Path
from runner.workflow.records import InputSpec, Workflow


def check_includes(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    declared = {spec.name: spec for spec in wf.inputs}
    for stage, path in walk.order:
        if isinstance(stage, WorkflowStage):
            out.extend(_check(stage.include, path, None, declared, wf, source))
        elif isinstance(stage, FanoutStage) and stage.workflow is not None:
            out.extend(_check(stage.workflow, path, stage, declared, wf, source))
    return out


def _check(
    inc: Include,
    stage_path: Path,
    fan: FanoutStage | None,
    declared: dict[str, InputSpec],
    wf: Workflow,
    source: Source,
) -> list[Diagnostic]:
    child = inc.child
    if child is None:  # not read: its problem is reported where it is named
        return []
    out: list[Diagnostic] = []
    base: Path = (*stage_path, *inc.base)
    specs = {spec.name: spec for spec in child.inputs}
    for name, value in inc.inputs.items():
        spec = specs.get(name)
        key = source.key((*base, "inputs", name), inc.loc)
        if spec is None:
            hint = suggest(name, specs, "inputs") if specs else f"{child.file} declares no inputs"
            out.append(diag(wf.file, key, "workflow-inputs", f"workflow {inc.file} has no input '{name}'", hint))
            continue
        gives = _type_of(value, declared, fan)
        if gives is None or _fits(gives, spec):
            continue
        where = source.value((*base, "inputs", name), inc.loc)
        if isinstance(value, TemplateSrc):
            shown = describe_value(value.text) if is_constant(value.text) else f"{A_TYPE[gives]} (a template)"
        else:
            shown = describe_value(value)
        out.append(
            diag(
                wf.file,
                where,
                "workflow-inputs",
                f"input '{name}' of workflow {inc.file} is {A_TYPE[spec.type]} ({_at(inc, spec)}), and this gives "
                f"{shown}",
                _hint(spec),
            )
        )
    missing = [spec for spec in child.inputs if spec.required and spec.name not in inc.inputs]
    for spec in missing:
        where = source.value((*base, "workflow"), inc.loc)
        out.append(
            diag(
                wf.file,
                where,
                "workflow-inputs",
                f"workflow {inc.file} needs input '{spec.name}' ({A_TYPE[spec.type]}, {_at(inc, spec)})",
                f"add it: inputs: {{{spec.name}: ...}}",
            )
        )
    return out


def _at(inc: Include, spec: InputSpec) -> str:
    """Where the child declares an input, its file named as the include writes it (beside it in the message)."""
    return f"{inc.file}:{spec.loc.line}:{spec.loc.column}"


def _hint(spec: InputSpec) -> str:
    if spec.type == "string":
        return "write text, or a template that gives text"
    return f"give {A_TYPE[spec.type]}: a YAML value, or a single {{{{ expression }}}} that gives one"


def _fits(gives: str, spec: InputSpec) -> bool:
    return gives == spec.type or (gives == "integer" and spec.type == "number")


_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (tuple, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str | None:
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return None


def _type_of(value: Any, declared: dict[str, InputSpec], fan: FanoutStage | None) -> str | None:
    """The JSON type a given input has, when the file decides it; None when only the run can tell."""
    if not isinstance(value, TemplateSrc):
        return _json_type(value)
    text = value.text.strip()
    if is_constant(value.text):
        return "string"
    parts = simple_parts(text)
    if parts is None or len(parts) != 1 or not isinstance(parts[0], tuple):
        # text around the expression, several of them, or Jinja beyond a plain lookup: text, unless a single
        # {{ ... }} (whose value keeps its type: a filter or a call may give anything)
        single = text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1
        return None if single else "string"
    lookup = parts[0]
    if len(lookup) == 2 and lookup[0] == "inputs" and lookup[1] in declared:
        return declared[lookup[1]].type
    if (
        fan is not None
        and len(lookup) == 2
        and lookup[0] == "vars"
        and lookup[1] == fan.as_name
        and isinstance(fan.for_each, tuple)
    ):
        kinds = {_json_type(item) for item in fan.for_each}
        return kinds.pop() if len(kinds) == 1 else None
    return None
