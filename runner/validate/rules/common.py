"""Helpers shared by the rule modules: building a located diagnostic, "did you mean", type names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.diagnostics import Diagnostic
from runner.validate.rules.catalog import RULES
from runner.validate.rules.source import Where

A_TYPE = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "a list",
    "object": "a mapping",
}


def diag(file: str, where: Where, rule: str, message: str, hint: str = "") -> Diagnostic:
    return Diagnostic(
        file, where.line, where.column, where.end_line, where.end_column, RULES[rule].severity, rule, message, hint
    )


def suggest(name: str, options: Iterable[str], what: str) -> str:
    names = sorted(set(options))
    import difflib  # noqa: PLC0415 - only for a message: off the path of a clean run

    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if names:
        return f"defined {what}: {', '.join(names)}"
    return f"define it under '{what}:'"


def describe_value(value: Any) -> str:
    """``a string ('six')``: the JSON type of a YAML value, with a short preview."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if value is None:
        return "null"
    for kind, name in ((int, "integer"), (float, "number"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            preview = repr(value)
            if len(preview) > 40:
                preview = preview[:37] + "..."
            return f"{A_TYPE[name]} ({preview})"
    return type(value).__name__
