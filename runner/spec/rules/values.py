"""Values the schema cannot type: an input's ``default`` must match the input's own ``type`` and ``items``."""

from __future__ import annotations

from runner.spec.diagnostics import Diagnostic
from runner.spec.inputs import type_matches
from runner.spec.records import Workflow
from runner.spec.rules.common import A_TYPE, describe_value, diag
from runner.spec.rules.source import Source


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
