"""JSON Schema validation of a loaded workflow, with every error located in the YAML file."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from runner.diagnostics import Diagnostic
from runner.resources import load_schema, schema_path
from runner.workflow.document import Document, Path

WORKFLOW_SCHEMA = "workflow.schema.json"
_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*$"  # ids and names of models, agents, tools, ...
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - heavy import, only when validating

    return Draft202012Validator(load_schema(WORKFLOW_SCHEMA))


def describe_path(path: Path, data: Any) -> str:
    """``stages[2] (id='digest').fanout`` rather than ``$.stages[2].fanout``: name the object, not the index."""
    out = ""
    node = data
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f" (id={node['id']!r})"
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out or "the top level"


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name, kind in (("object", dict), ("array", list), ("string", str), ("integer", int), ("number", float)):
        if isinstance(value, kind):
            return name
    return "null"


def _did_you_mean(word: str, options: list[str]) -> str:
    import difflib  # noqa: PLC0415 - only for a message: off the path of a clean run

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def _messages(error: Any, doc: Document) -> list[tuple[Path, bool, str, str]]:
    """(where, at the key rather than the value, message, hint) for one jsonschema error."""
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = sorted(schema.get("properties", {}))
        where = describe_path(tuple(error.absolute_path), doc.data)
        out: list[tuple[Path, bool, str, str]] = []
        for key in error.instance:
            if key in allowed:
                continue
            hint = _did_you_mean(key, allowed) or (f"allowed keys: {', '.join(allowed)}" if allowed else "")
            out.append(((*error.absolute_path, key), True, f"unknown key '{key}' in {where}", hint))
        return out
    return [_message(error, doc)]


def _message(error: Any, doc: Document) -> tuple[Path, bool, str, str]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        path = (*path, error.instance)  # a refused key name: point at the key, not at its mapping
        where = describe_path(path, doc.data)
        if "x-error" in schema:
            return path, True, f"{where}: {_x_error(schema, error.instance)}", schema.get("x-hint", "")
    where = describe_path(path, doc.data)
    if "x-error" in schema and kind in ("oneOf", "not", "anyOf"):
        # `not` refuses a key that is there (`model` on a hashing embedder): point at the key
        return path, kind == "not", f"{where}: {_x_error(schema, error.instance)}", schema.get("x-hint", "")
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        hint = schema.get("x-required-hints", {}).get(missing) or f"add '{missing}'"
        return path, False, f"{where}: missing required key '{missing}'", hint
    if kind == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        want = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in expected)
        got = _TYPE_NAMES[_type_of(error.instance)]
        examples = schema.get("examples")
        hint = f"write {want}" + (f", e.g. {json.dumps(examples[0])}" if examples else "")
        return path, False, f"{where}: expected {want}, got {got}", hint
    if kind == "enum":
        options = [str(o) for o in error.validator_value]
        hint = _did_you_mean(str(error.instance), options) or f"use one of: {', '.join(options)}"
        return path, False, f"{where}: {error.instance!r} is not one of {', '.join(options)}", hint
    if kind == "const":
        hint = f"write {json.dumps(error.validator_value)}"
        return path, False, f"{where}: must be {error.validator_value!r}, got {error.instance!r}", hint
    if kind == "pattern":
        hint = schema.get("x-hint") or (
            "use letters, digits, '_' and '-', starting with a letter or '_'"
            if error.validator_value == _NAME_PATTERN
            else f"write a value that matches {error.validator_value}"
        )
        return path, False, f"{where}: {error.instance!r} does not match the pattern {error.validator_value}", hint
    if kind == "propertyNames":
        return (
            (*path, error.instance),
            True,
            f"{where}: invalid name {error.instance!r}",
            ("use letters, digits, '_' and '-', starting with a letter or '_'"),
        )
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        hint = f"use a value {op} {error.validator_value}"
        return path, False, f"{where}: must be {op} {error.validator_value}, got {error.instance!r}", hint
    if kind in ("minItems", "minLength"):
        hint = "list at least one item" if kind == "minItems" else "write a value, or leave the key out"
        return path, False, f"{where}: must not be empty", hint
    if kind == "uniqueItems":
        return path, False, f"{where}: items must be unique", "remove the repeated item"
    return path, False, f"{where}: {error.message}", ""


def _x_error(schema: dict[str, Any], value: Any) -> str:
    """The schema's own words for a failed ``oneOf``/``anyOf``/``not`` (``x-error``), naming the value where
    the text asks for it (``{value!r}``)."""
    text = str(schema["x-error"])
    return text.format(value=value) if "{value" in text else text


def _leaves(error: Any) -> list[Any]:
    # if/then and allOf wrap the real errors; report the innermost ones, which point at the exact key.
    if error.validator in ("allOf", "then", "else", "$ref") and error.context:
        out: list[Any] = []
        for sub in error.context:
            out.extend(_leaves(sub))
        return out
    return [error]


@cache
def _schema_bytes() -> bytes:
    """The workflow schema's file, read once a process (``runner validate`` of a folder checks many files)."""
    return schema_path(WORKFLOW_SCHEMA).read_bytes()


def check_schema(doc: Document, text: bytes) -> list[Diagnostic]:
    """:func:`schema_diagnostics` of ``doc`` (loaded from ``text``), skipped when the same bytes passed the
    same schema before (:mod:`runner.workflow.verdicts`: a pass remembered spares the jsonschema import)."""
    from runner.version import __version__  # noqa: PLC0415
    from runner.workflow import verdicts  # noqa: PLC0415

    key = verdicts.verdict_key(text, _schema_bytes(), __version__)
    if verdicts.passed_before(key):
        return []
    problems = schema_diagnostics(doc)
    if not problems:
        verdicts.remember_pass(key)
    return problems


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for error in _validator().iter_errors(doc.data):
        for leaf in _leaves(error):
            for path, at_key, message, hint in _messages(leaf, doc):
                span = doc.span(path, key=at_key)
                out.append(
                    Diagnostic(
                        doc.file,
                        span.line,
                        span.column,
                        span.end_line,
                        span.end_column,
                        "error",
                        "schema",
                        message,
                        hint,
                    )
                )
    return out
