"""One step into a JSON Schema, for the data-flow rule (``dataflow.py``): what reading a field or an index of a
value gives, whether the field is always there, or why it cannot be read. A schema that does not say (no type,
``true``, an open object, a ``$ref`` outside it) gives "not known", never a problem."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.structured import json_type
from runner.validate.rules.common import suggest

Key = str | int


@dataclass(frozen=True, slots=True)
class Step:
    """Where reading ``key`` of a value leads: its schema (None: the schema does not say), whether the key is
    always there (``required``), or why it cannot be read (``problem`` with a ``hint``)."""

    schema: Any = None
    required: bool = True
    problem: str | None = None
    hint: str = ""


_UNKNOWN = Step()
_STR_ATTRS = frozenset(a for a in dir(str) if not a.startswith("_"))
_LIST_ATTRS = frozenset(a for a in dir(list) if not a.startswith("_"))
_DICT_ATTRS = frozenset(a for a in dir(dict) if not a.startswith("_"))
_NAMES = {"string": "text", "integer": "a number", "number": "a number", "boolean": "a boolean", "null": "null"}


def resolve(schema: Any, root: Any, depth: int = 0) -> Any:
    """``schema`` with a ``$ref`` inside ``root`` followed; None when it cannot be (outside the schema)."""
    while isinstance(schema, Mapping) and "$ref" in schema and depth < 32:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node: Any = root
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        schema, depth = node, depth + 1
    return schema


def types_of(schema: Any, root: Any) -> frozenset[str] | None:
    """The JSON types a schema allows, when it says; None when it does not (or allows anything)."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return frozenset({kind})
    if isinstance(kind, list):
        return frozenset(str(k) for k in kind)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            found: set[str] = set()
            for branch in schema[key]:
                branch_types = types_of(branch, root)
                if branch_types is None:
                    return None
                found |= branch_types
            return frozenset(found)
    if "properties" in schema:
        return frozenset({"object"})
    if "items" in schema or "prefixItems" in schema:
        return frozenset({"array"})
    values = schema.get("enum") if isinstance(schema.get("enum"), list) else None
    if values is None and "const" in schema:
        values = [schema["const"]]
    if values is not None:
        return frozenset(json_type(v) for v in values)
    return None


def step(schema: Any, key: Key, root: Any, expr: str) -> Step:
    """Reading ``key`` (a field, or an index) of a value with ``schema``; ``expr`` is how the value is written."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping) or not schema:
        return _UNKNOWN
    for combinator in ("anyOf", "oneOf"):
        if isinstance(schema.get(combinator), list):
            return _either([step(branch, key, root, expr) for branch in schema[combinator]], key, expr)
    if isinstance(schema.get("allOf"), list):
        found = [step(part, key, root, expr) for part in schema["allOf"]]
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        own = step(merged, key, root, expr) if any(k in merged for k in ("type", "properties", "items")) else None
        hits = [s for s in [*found, *([own] if own else [])] if s.problem is None and s.schema is not None]
        if hits:
            return Step(hits[0].schema, any(s.required for s in hits))
        return _UNKNOWN
    kinds = types_of(schema, root)
    if kinds is None:
        return _UNKNOWN
    if isinstance(key, int):
        if "array" not in kinds:
            return Step(problem=f"{expr} is {kinds_text(kinds)}, not a list", hint="read one of its fields instead")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and 0 <= key < len(prefix):
            return Step(prefix[key], required=False)
        return Step(schema.get("items"), required=False)
    if "object" in kinds:
        props: Mapping[str, Any] = schema["properties"] if isinstance(schema.get("properties"), Mapping) else {}
        required: list[Any] = schema["required"] if isinstance(schema.get("required"), list) else []
        if key in props:
            return Step(props[key], key in required)
        for pattern, sub in (schema.get("patternProperties") or {}).items():
            if re.search(pattern, key):
                return Step(sub, required=False)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            return Step(extra, required=False)
        if extra is True or not props or key in _DICT_ATTRS:
            return _UNKNOWN  # an open object, or a dict method (items, keys, get)
        fields = sorted(props)
        close = suggest(key, fields, "fields")
        hint = close if close.startswith("did you mean") else f"its fields: {', '.join(fields)}"
        return Step(problem=f"no field '{key}' in {expr}", hint=hint)
    if "array" in kinds:
        if key in _LIST_ATTRS:
            return _UNKNOWN
        return Step(
            problem=f"{expr} is a list, which has no field '{key}'",
            hint=f"loop over it ({{% for x in {expr} %}}{{{{ x.{key} }}}}{{% endfor %}}) or index it ({expr}[0].{key})",
        )
    if "string" in kinds and key in _STR_ATTRS:
        return _UNKNOWN
    return Step(problem=f"{expr} is {kinds_text(kinds)}, which has no field '{key}'", hint="read it as a whole")


def _either(steps: list[Step], key: Key, expr: str) -> Step:
    hits = [s for s in steps if s.problem is None]
    if not hits:
        return steps[0] if steps else _UNKNOWN
    if any(s.schema is None for s in hits):
        return Step(None, all(s.required for s in hits) and len(hits) == len(steps))
    schema = hits[0].schema if len(hits) == 1 else {"anyOf": [s.schema for s in hits]}
    return Step(schema, all(s.required for s in hits) and len(hits) == len(steps))


def kinds_text(kinds: frozenset[str]) -> str:
    words = sorted({_NAMES.get(k, "a mapping" if k == "object" else "a list") for k in kinds})
    return " or ".join(words)


def index_text(key: Key) -> str:
    return f"[{key}]" if isinstance(key, int) else f".{key}"
