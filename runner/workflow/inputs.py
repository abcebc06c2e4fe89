"""Workflow inputs: defaults, ``--set name=value`` parsed by the declared type, required ones present."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from runner.errors import RunnerError, SpecError
from runner.workflow.limits import MAX_DEPTH, MAX_FILE_BYTES, read_limited
from runner.workflow.records import InputSpec, Workflow

# Deeper data crashed the run and the report with a RecursionError (issue 21); a workflow file may not nest
# deeper either, so what a file can hold an input can hold.
_TOO_DEEP = f"the value nests deeper than {MAX_DEPTH} levels, the most an input may (as in a workflow file)"

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def nesting(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep lists and mappings nest in ``value`` (a scalar: 0), counted without recursion and only up to
    ``limit + 1``: enough to refuse a value nested past the limit."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth) for child in children)
    return deepest


def _too_deep(value: Any) -> str | None:
    return _TOO_DEEP if nesting(value) > MAX_DEPTH else None


def type_matches(value: Any, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, _PY_TYPES[type_name])


def parse_value(text: str, spec: InputSpec) -> Any:
    """Parse a command-line value by the input's type; raise ValueError with what was expected."""
    kind = spec.type
    if kind == "string":
        return text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind == "number":
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        value = json.loads(text)
    except RecursionError:  # issue 21: 500 levels of JSON were an exit 3 from run and validate
        raise ValueError(_TOO_DEEP) from None
    except json.JSONDecodeError:
        if kind == "array":  # a convenience: --set perspectives=a,b,c
            value = [part.strip() for part in text.split(",") if part.strip()]
        else:
            raise ValueError(f"expected a JSON object, got {preview(text)}") from None
    if not type_matches(value, kind):
        raise ValueError(f"expected a JSON {kind}, got {preview(text)}")
    deep = _too_deep(value)
    if deep is not None:
        raise ValueError(deep)
    return value


def preview(text: str, *, quote: bool = True) -> str:
    """The value as typed, cut short: a message quotes what the user gave, not a megabyte of it."""
    short = text if len(text) <= 80 else text[:77]
    shown = repr(short) if quote else short
    return shown if short is text else shown + "..."


def check_items(value: Any, spec: InputSpec) -> str | None:
    if spec.type == "array" and spec.items is not None:
        for i, item in enumerate(value):
            if not type_matches(item, spec.items):
                return f"item {i} ({item!r}) is not of type {spec.items}"
    return None


def resolve_inputs(
    wf: Workflow,
    assignments: Sequence[str],
    extra: Mapping[str, Any] | None = None,
    *,
    how: str = "--set {name}=...",
) -> dict[str, Any]:
    """Defaults overlaid by ``extra`` (from ``--input FILE``, or ``runner.run``'s ``inputs``) and ``--set``
    values; every problem at once. ``how`` says how a missing input is given (the CLI's way by default)."""
    specs = {spec.name: spec for spec in wf.inputs}
    values: dict[str, Any] = {name: spec.default for name, spec in specs.items() if not spec.required}
    problems: list[str] = []
    given: dict[str, Any] = dict(extra or {})
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep:
            problems.append(f"--set {assignment!r}: expected name=value")
            continue
        spec = specs.get(name)
        if spec is None:
            import difflib  # noqa: PLC0415 - only for a message: off the path of a clean run

            close = difflib.get_close_matches(name, list(specs), n=1)
            hint = (
                f" (did you mean '{close[0]}'?)"
                if close
                else (f" (inputs: {', '.join(specs)})" if specs else " (the workflow declares no inputs)")
            )
            problems.append(f"--set {name}: unknown input{hint}")
            continue
        try:
            given[name] = parse_value(text, spec)
        except ValueError as exc:
            problems.append(f"--set {name}: {exc}")
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            if name not in {a.partition("=")[0].strip() for a in assignments}:
                problems.append(f"input {name!r} is not declared by the workflow")
            continue
        if not type_matches(value, spec.type):
            problems.append(f"input {name}: expected {spec.type}, got {type(value).__name__}")
            continue
        deep = _too_deep(value)
        if deep is not None:
            problems.append(f"input {name}: {deep}")
            continue
        bad = check_items(value, spec)
        if bad:
            problems.append(f"input {name}: {bad}")
            continue
        values[name] = value
    for name, spec in specs.items():
        if spec.required and name not in given:
            problems.append(f"input {name} is required: pass {how.format(name=name)} ({spec.loc})")
    if problems:
        raise RunnerError("\n".join(problems))
    return values


def read_input_file(path: str) -> dict[str, Any]:
    """Inputs from a YAML or JSON file holding one mapping (``--input FILE``); safe YAML only."""
    from runner.workflow.document import LoadError, decode, load_document  # noqa: PLC0415 - only for --input

    try:
        raw, size = read_limited(path)
    except OSError as exc:
        raise RunnerError(f"--input {path}: cannot read the file: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:  # the limit of workflow files: PyYAML would take minutes on a huge file
        raise RunnerError(
            f"--input {path}: the file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes for inputs; "
            "pass large data as a file path in an input, and read it in a tool or a python stage"
        )
    try:
        doc = load_document(decode(raw, path), path)
    except LoadError as exc:
        raise SpecError(exc.diagnostics) from None
    if not isinstance(doc.data, dict):
        raise RunnerError(f"{path}:1:1: --input needs a mapping of input names to values")
    return doc.data
