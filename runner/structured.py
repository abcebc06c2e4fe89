"""Structured outputs: a reply parsed as JSON and checked against the JSON Schema a stage declares, and, for
offline runs, a value built from that schema.

Pure functions on data (no asyncio, no network): the engine parses and checks a model's reply with them,
the scripted provider answers with :func:`example_value` when it has no reply template, and ``runner
validate`` checks a declared schema with :func:`schema_problem`. jsonschema is imported when a structured
output is used, never by a workflow without one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = Mapping[str, Any] | bool
"""A JSON Schema: a mapping, or true (anything) / false (nothing)."""
SNIPPET = 200
"""Characters of a reply quoted in a message about it."""

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n\s*```\s*$", re.S)


class StructuredError(ValueError):
    """A reply that does not parse or does not match its schema; ``problem`` says where and why."""

    def __init__(self, problem: str, reply: str) -> None:
        self.problem = problem
        self.reply = reply
        super().__init__(problem)

    def describe(self) -> str:
        """The problem and the start of the reply, as a stage's failure shows it."""
        more = "..." if len(self.reply) > SNIPPET else ""
        return f"{self.problem}; the reply began: {self.reply[:SNIPPET]!r}{more}"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One place where a value does not match its schema: ``path`` in the value (``$.items[2].name``), what
    the schema wanted there, and the schema keyword that said so."""

    path: str
    wanted: str
    keyword: str

    def __str__(self) -> str:
        return f"at {self.path}: {self.wanted}"


_VALIDATORS: dict[int, tuple[Any, Any]] = {}
"""id(schema) -> (schema, its validator): a workflow's schemas are few and live as long as the run, and making a
validator costs more than checking a small reply with it. The schema is kept so that its id stays its own."""


def _validator(schema: Schema) -> Any:
    found = _VALIDATORS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - only for workflows with structured outputs

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    if len(_VALIDATORS) < 1024:  # bounded: a program making schemas in a loop keeps no more than this
        _VALIDATORS[id(schema)] = (schema, validator)
    return validator


_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")


_FAST: dict[int, tuple[Any, Any]] = {}  # id(schema) -> (schema, its compiled check or None), as _VALIDATORS


def _fast_check(schema: Schema) -> Any:
    found = _FAST.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    from runner.schemacheck import compile_schema  # noqa: PLC0415

    check = compile_schema(schema)
    if len(_FAST) < 1024:
        _FAST[id(schema)] = (schema, check)
    return check


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a usable JSON Schema (draft 2020-12), or None."""
    from jsonschema import Draft202012Validator  # noqa: PLC0415
    from jsonschema.exceptions import SchemaError  # noqa: PLC0415

    if not isinstance(schema, dict | bool):
        return f"a JSON Schema is a mapping (or true/false), not {type(schema).__name__}"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        message = exc.message
        path = list(exc.absolute_path)
        if path and path[-1] == "type" or (len(path) > 1 and path[-2] == "type"):
            message = f"{json.dumps(exc.instance)} is not a type: use {', '.join(_TYPES)}"
        return f"not a valid JSON Schema: {message}" + (f" (at schema{where})" if where else "")
    return None


def schema_problem_path(schema: Any) -> tuple[str | int, ...]:
    """Where in ``schema`` the problem :func:`schema_problem` reports is (``("properties", "x", "type")``), to
    locate it in the workflow file; ``()`` for the schema itself or when it has none."""
    from jsonschema import Draft202012Validator  # noqa: PLC0415
    from jsonschema.exceptions import SchemaError  # noqa: PLC0415

    if not isinstance(schema, dict):
        return ()
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return tuple(exc.absolute_path)
    return ()


def json_path(path: Sequence[Any]) -> str:
    """``$.items[2].name``: where in a value a problem is."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def mismatches(value: Any, schema: Schema, *, limit: int = 5) -> list[Mismatch]:
    """Where ``value`` does not match ``schema``, most specific first, at most ``limit``."""
    from jsonschema.exceptions import best_match  # noqa: PLC0415

    fast = _fast_check(schema)
    if fast is not None and fast(value):  # the common case, without jsonschema's machinery (runner/schemacheck.py)
        return []
    validator = _validator(schema)
    if validator.is_valid(value):
        return []
    errors = list(validator.iter_errors(value))
    if not errors:
        return []
    found: list[Mismatch] = []
    best = best_match(errors)
    ordered = [best] + sorted((e for e in errors if e is not best), key=lambda e: (-len(e.absolute_path), str(e)))
    seen: set[tuple[str, str]] = set()
    for error in ordered:  # best_match may give an error of a subschema's context: the same one again, below
        mismatch = Mismatch(json_path(error.absolute_path), _wanted(error), str(error.validator))
        if (mismatch.path, mismatch.wanted) in seen:
            continue
        seen.add((mismatch.path, mismatch.wanted))
        found.append(mismatch)
        if len(found) == limit:
            break
    return found


def _wanted(error: Any) -> str:
    """What the schema wanted where ``error`` is, in words."""
    keyword, expected = error.validator, error.validator_value
    if keyword == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"expected {' or '.join(kinds)}, got {json_type(error.instance)}"
    if keyword == "required":
        missing = [name for name in expected if isinstance(error.instance, dict) and name not in error.instance]
        return "missing required field " + ", ".join(repr(m) for m in missing)
    if keyword == "enum":
        return f"expected one of {', '.join(json.dumps(v) for v in expected)}, got {json.dumps(error.instance)}"
    if keyword == "const":
        return f"expected {json.dumps(expected)}, got {json.dumps(error.instance)}"
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        return str(error.message).replace("Additional properties are not allowed", "unexpected field(s)")
    return str(error.message)


def json_type(value: Any) -> str:
    """The JSON Schema type of a decoded JSON value (``integer`` for an int, never ``number``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_reply(text: str) -> Any:
    """The JSON value of a reply: the whole text, or the inside of one Markdown code fence around it (as models
    asked for JSON in the prompt often write). Raises :class:`StructuredError` for anything else."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced is not None:
        body = fenced.group(1).strip()
    if not body:
        raise StructuredError("the reply is empty, not JSON", text)
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg.removesuffix(' at')} at line {exc.lineno}, column {exc.colno}"
        if exc.pos >= len(body) - 1 or exc.msg.startswith("Unterminated"):
            problem = f"the reply is not complete JSON ({where}): it may have been cut off"
        else:
            problem = f"the reply is not JSON ({where})"
        raise StructuredError(problem, text) from None


def check_reply(text: str, schema: Schema) -> Any:
    """The reply's value when it parses and matches ``schema``; else :class:`StructuredError` saying where."""
    value = parse_reply(text)
    found = mismatches(value, schema, limit=3)
    if found:
        raise StructuredError("the value does not match the schema " + "; ".join(str(m) for m in found), text)
    return value


def repair_prompt(error: StructuredError, schema: Schema) -> str:
    """The message sent back to a model whose reply did not parse or validate: what was wrong, and the schema."""
    return (
        f"Your last reply could not be used: {error.problem}. Reply again with only a JSON value that matches "
        f"this JSON Schema, and nothing else:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def schema_instructions(schema: Any) -> str:
    """What a system prompt says when the server cannot be given the schema itself (JSON mode, or none)."""
    return (
        "Reply with only a JSON value that matches this JSON Schema, with no other text before or after it:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


# -- a value built from a schema (offline dry runs) -------------------------------------------------------------


class NoExample(ValueError):
    """The schema asks for something :func:`example_value` cannot build (a ``pattern`` it cannot match, say)."""


def example_value(schema: Any) -> Any:
    """A deterministic value that matches ``schema``: its ``examples`` or ``default`` or ``const`` when given, the
    first value of an ``enum``, else the smallest value of its type that meets its bounds (``minItems`` items,
    ``minLength`` characters, every declared property of an object). Checked against the schema; raises
    :class:`NoExample` saying what to add (an ``examples`` entry) when the built value does not match."""
    value = _build(schema, schema if isinstance(schema, dict) else {}, depth=0)
    found = mismatches(value, schema, limit=1) if isinstance(schema, dict) else []
    if found:
        problem = found[0]
        raise NoExample(
            f"cannot build a value that matches this schema ({problem}); add an example to the schema "
            "(examples: [...]) or give the scripted model a reply"
        )
    return value


_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "duration": "P1D",
}


def _build(schema: Any, root: Mapping[str, Any], depth: int) -> Any:
    if depth > 32:
        raise NoExample("the schema nests deeper than 32 levels (a recursive $ref?); give the model a reply")
    if schema is True or schema == {}:
        return None
    if schema is False:
        raise NoExample("the schema is false: no value matches it")
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return _build(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                for k, v in part.items():
                    if k == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required":
                        merged["required"] = [*merged.get("required", []), *v]
                    else:
                        merged.setdefault(k, v)
        return _build(merged, root, depth + 1)
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return _build(schema[key][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = _infer_type(schema)
    if kind == "object":
        props = schema.get("properties", {})
        out = {name: _build(sub, root, depth + 1) for name, sub in props.items()}
        for name in schema.get("required", []):
            if name not in out:
                extra = schema.get("additionalProperties", True)
                out[name] = _build(extra if isinstance(extra, dict) else {}, root, depth + 1)
        return out
    if kind == "array":
        prefix = schema.get("prefixItems", [])
        items = [_build(sub, root, depth + 1) for sub in prefix]
        want = max(int(schema.get("minItems", 0)), len(prefix))
        item_schema = schema.get("items", {})
        if "contains" in schema and want == 0:
            want = max(1, int(schema.get("minContains", 1)))
        while len(items) < want:
            source = schema["contains"] if "contains" in schema and not items else item_schema
            items.append(_build(source, root, depth + 1))
        distinct = {json.dumps(i, sort_keys=True) for i in items}
        if schema.get("uniqueItems") and len(distinct) < len(items):
            raise NoExample("the schema asks for unique items but gives no examples to tell them apart")
        return items
    if kind == "string":
        fmt = schema.get("format")
        text = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
        if "pattern" in schema and not re.search(schema["pattern"], text):
            raise NoExample(f"cannot make a string that matches the pattern {schema['pattern']!r}")
        minimum = int(schema.get("minLength", 0))
        if len(text) < minimum:
            text = text + "x" * (minimum - len(text))
        return text
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return None


def _infer_type(schema: Mapping[str, Any]) -> str | None:
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema or "minItems" in schema:
        return "array"
    if "minLength" in schema or "maxLength" in schema or "pattern" in schema or "format" in schema:
        return "string"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    ex_low = schema.get("exclusiveMinimum")
    high = schema.get("maximum")
    step = schema.get("multipleOf")
    value: float = 0
    if low is not None:
        value = low
    if ex_low is not None and value <= ex_low:
        value = ex_low + (1 if integer or step is None else step)
    if step:
        value = math.ceil(value / step) * step
    if integer:
        value = math.ceil(value)
    if high is not None and value > high:
        raise NoExample(f"cannot make a number between {low if low is not None else ex_low} and {high}")
    return int(value) if integer else value


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        raise NoExample(f"cannot follow the reference {ref!r}: only references inside the schema (#/...) are followed")
    node: Any = root
    for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise NoExample(f"the reference {ref!r} points at nothing in the schema")
        node = node[part]
    return node
