"""Workflow inputs: defaults, ``--set name=value`` parsed by the declared type, required ones present."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from runner.errors import RunnerError, SpecError
from runner.spec.records import InputSpec, Workflow

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


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
    except json.JSONDecodeError:
        if kind == "array":  # a convenience: --set perspectives=a,b,c
            value = [part.strip() for part in text.split(",") if part.strip()]
        else:
            raise ValueError(f"expected a JSON object, got {text!r}") from None
    if not type_matches(value, kind):
        raise ValueError(f"expected a JSON {kind}, got {text!r}")
    return value


def check_items(value: Any, spec: InputSpec) -> str | None:
    if spec.type == "array" and spec.items is not None:
        for i, item in enumerate(value):
            if not type_matches(item, spec.items):
                return f"item {i} ({item!r}) is not of type {spec.items}"
    return None


def resolve_inputs(wf: Workflow, assignments: Sequence[str], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults overlaid by ``extra`` (from ``--input FILE``) and ``--set`` values; every problem at once."""
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
        bad = check_items(value, spec)
        if bad:
            problems.append(f"input {name}: {bad}")
            continue
        values[name] = value
    for name, spec in specs.items():
        if spec.required and name not in given:
            problems.append(f"input {name} is required: pass --set {name}=... ({spec.loc})")
    if problems:
        raise RunnerError("\n".join(problems))
    return values


def read_input_file(path: str) -> dict[str, Any]:
    """Inputs from a YAML or JSON file holding one mapping (``--input FILE``); safe YAML only."""
    from runner.spec.yamlpos import LoadError, decode, load_document  # noqa: PLC0415

    try:
        with open(path, "rb") as file:  # closed at once: a leaked file is a ResourceWarning in every caller
            raw = file.read()
    except OSError as exc:
        raise RunnerError(f"--input {path}: cannot read the file: {exc.strerror}") from None
    try:
        doc = load_document(decode(raw, path), path)
    except LoadError as exc:
        raise SpecError(exc.diagnostics) from None
    if not isinstance(doc.data, dict):
        raise RunnerError(f"{path}:1:1: --input needs a mapping of input names to values")
    return doc.data
