"""Values the schema cannot type: an input's ``default`` must match the input's own ``type`` and ``items``."""

from __future__ import annotations

from runner.config.source import Loc
from runner.diagnostics import Diagnostic
from runner.validate.rules.common import A_TYPE, describe_value, diag, suggest
from runner.validate.rules.source import Source, Where
from runner.workflow.inputs import check_items, parse_value, preview, type_matches
from runner.workflow.records import Workflow


def check_input_defaults(wf: Workflow, source: Source) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for spec in wf.inputs:
        if spec.required:
            continue
        path = ("inputs", spec.name, "default")
        if not type_matches(spec.default, spec.type):
            out.append(
                diag(
                    wf.file,
                    source.value(path, spec.loc, len(spec.name)),
                    "input-default-type",
                    f"the default of input '{spec.name}' is {describe_value(spec.default)}, not {A_TYPE[spec.type]}",
                    f"change the default, or the input's type ({spec.type})",
                )
            )
            continue
        if spec.type == "array" and spec.items is not None:
            for i, item in enumerate(spec.default):
                if not type_matches(item, spec.items):
                    out.append(
                        diag(
                            wf.file,
                            source.value((*path, i), spec.loc, len(spec.name)),
                            "input-default-type",
                            f"item {i} of the default of input '{spec.name}' is {describe_value(item)}, "
                            f"not {A_TYPE[spec.items]}",
                            f"change the item, or the input's items ({spec.items})",
                        )
                    )
    return out


def check_sets(wf: Workflow, assignments: list[tuple[str, str]]) -> list[Diagnostic]:
    """``--set name=value`` given to ``runner validate``: each names a declared input and parses by its type,
    exactly as ``runner run`` will parse it. Located at the input's declaration."""
    out: list[Diagnostic] = []
    specs = {spec.name: spec for spec in wf.inputs}
    for name, text in assignments:
        spec = specs.get(name)
        if spec is None:
            top = Loc(wf.file, 1, 1)
            out.append(
                diag(
                    wf.file,
                    Where(top.line, top.column, top.line, top.column + 1),
                    "set-value",
                    f"--set {name}: the workflow declares no input '{name}'",
                    suggest(name, specs, "inputs"),
                )
            )
            continue
        where = Where(spec.loc.line, spec.loc.column, spec.loc.line, spec.loc.column + len(name))
        try:
            value = parse_value(text, spec)
        except ValueError as exc:
            problem: str | None = str(exc)
        else:
            problem = check_items(value, spec)
        if problem is not None:
            out.append(
                diag(
                    wf.file,
                    where,
                    "set-value",
                    f"--set {name}={preview(text, quote=False)}: {problem} (input '{name}' has type {spec.type})",
                    f"pass a value of type {spec.type}" + (f" with items of type {spec.items}" if spec.items else ""),
                )
            )
    return out
