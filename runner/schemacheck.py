"""A JSON Schema compiled into plain Python checks, for the subset structured outputs use (issue 16).

jsonschema walks a schema keyword by keyword through its generic machinery: checking a 2 KB plan against a
modest schema took 1-2 ms, twenty times what the engine spends on a whole 1,000-way fan-out's bookkeeping
(``bench/structured_overhead.py``). The reply of every structured call is checked, so the common case gets a
checker compiled once per schema: nested closures, one per keyword, that answer "valid" only when jsonschema
would. Anything it does not know (``oneOf``, ``if``, ``patternProperties``, a ``$ref`` outside the schema, ...)
makes :func:`compile_schema` give None, and a ``format`` or an unexpected value makes a check answer "not sure"
(False): either way the caller asks jsonschema, which also writes the messages of a reply that does not match.
So this module can only make a valid reply cheaper, never let an invalid one through: the tests compare it with
jsonschema on generated schemas and values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sized
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "definitions",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$anchor",
    }
)
_KNOWN = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "allOf",
    "anyOf",
    "$ref",
    "format",
}


class _Unsupported(Exception):
    pass


def compile_schema(schema: Any) -> Check | None:
    """A function that is True only for values ``schema`` accepts (False: invalid, or not sure), or None when the
    schema uses something this module does not check."""
    try:
        return _Compiler(schema).compile(schema)
    except (_Unsupported, RecursionError, re.error, TypeError, ValueError, KeyError):
        return None


_TYPES: dict[str, Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "number": lambda v: type(v) is int or type(v) is float,
    # jsonschema counts 2.0 as an integer, as the spec says
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
}


def equal(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema has it: true is not 1, 1 is 1.0, containers compared item by item."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return False
    return bool(a == b)


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, Mapping):
            raise _Unsupported
        unknown = set(schema) - _KNOWN
        if unknown:
            raise _Unsupported
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        kind = schema.get("type")
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            tests = [_TYPES[k] for k in kinds]  # KeyError for an unknown type: unsupported
            checks.append(tests[0] if len(tests) == 1 else _any(tests))
        if "enum" in schema:
            options = list(schema["enum"])
            plain = {o for o in options if type(o) is str}
            if len(plain) == len(options):
                checks.append(_among(frozenset(plain)))
            else:
                checks.append(_equal_to_one(options))
        if "const" in schema:
            checks.append(_equal_to_one([schema["const"]]))
        checks += self.numbers(schema) + self.strings(schema) + self.arrays(schema) + self.objects(schema)
        if "allOf" in schema:
            checks.append(_all([self.compile(s) for s in schema["allOf"]]))
        if "anyOf" in schema:
            checks.append(_any([self.compile(s) for s in schema["anyOf"]]))
        if not checks:
            return lambda v: True
        return checks[0] if len(checks) == 1 else _all(checks)

    def ref(self, ref: Any) -> Check:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise _Unsupported
        if ref in self.refs:
            return self.refs[ref]
        node: Any = self.root
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise _Unsupported
            node = node[part]
        holder: list[Check] = []
        self.refs[ref] = lambda v: holder[0](v)  # a recursive schema reaches itself through this
        holder.append(self.compile(node))
        return self.refs[ref]

    def numbers(self, schema: Mapping[str, Any]) -> list[Check]:
        out: list[Check] = []
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key not in schema:
                continue
            b = schema[key]
            if type(b) not in (int, float):
                raise _Unsupported
            out.append(_bound(key, b))
        return out

    def strings(self, schema: Mapping[str, Any]) -> list[Check]:
        out: list[Check] = []
        if "minLength" in schema:
            out.append(_size(str, int(schema["minLength"]), most=False))
        if "maxLength" in schema:
            out.append(_size(str, int(schema["maxLength"]), most=True))
        if "pattern" in schema:
            out.append(_pattern(re.compile(schema["pattern"])))
        if "format" in schema:
            out.append(lambda v: type(v) is not str)  # a format checker's verdict: jsonschema's to give
        return out

    def arrays(self, schema: Mapping[str, Any]) -> list[Check]:
        out: list[Check] = []
        if "items" in schema:
            item = self.compile(schema["items"])

            def items(v: Any) -> bool:
                if type(v) is list:
                    for x in v:
                        if not item(x):
                            return False
                return True

            out.append(items)
        if "minItems" in schema:
            out.append(_size(list, int(schema["minItems"]), most=False))
        if "maxItems" in schema:
            out.append(_size(list, int(schema["maxItems"]), most=True))
        if schema.get("uniqueItems") is True:
            out.append(lambda v: type(v) is not list or _unique(v))
        return out

    def objects(self, schema: Mapping[str, Any]) -> list[Check]:
        out: list[Check] = []
        props: Mapping[str, Any] = schema.get("properties") or {}
        if not isinstance(props, Mapping):
            raise _Unsupported
        compiled = {name: self.compile(sub) for name, sub in props.items()}
        required = tuple(schema.get("required") or ())
        extra = schema.get("additionalProperties", True)
        extra_check = None if extra is True else self.compile(extra)

        def check(v: Any) -> bool:
            if type(v) is not dict:
                return True
            for name in required:
                if name not in v:
                    return False
            for name, value in v.items():
                f = compiled.get(name)
                if f is not None:
                    if not f(value):
                        return False
                elif extra_check is not None and not extra_check(value):
                    return False
            return True

        if compiled or required or extra_check is not None:
            out.append(check)
        if "minProperties" in schema:
            out.append(_size(dict, int(schema["minProperties"]), most=False))
        if "maxProperties" in schema:
            out.append(_size(dict, int(schema["maxProperties"]), most=True))
        return out


# Plain loops, not all()/any() over generators: a generator costs about a microsecond to make, and a reply's check
# makes one per keyword per value (measured: 145 against 40 us for a 2 KB plan).
def _all(checks: list[Check]) -> Check:
    first, *rest = checks
    if len(rest) == 1:
        second = rest[0]
        return lambda v: first(v) and second(v)

    def check(v: Any) -> bool:
        for f in checks:
            if not f(v):
                return False
        return True

    return check


def _any(checks: list[Check]) -> Check:
    def check(v: Any) -> bool:
        for f in checks:
            if f(v):
                return True
        return False

    return check


def _among(options: frozenset[str]) -> Check:
    return lambda v: type(v) is str and v in options


def _equal_to_one(options: list[Any]) -> Check:
    def check(v: Any) -> bool:
        for option in options:
            if equal(v, option):
                return True
        return False

    return check


def _size(kind: type[Sized], n: int, *, most: bool) -> Check:
    def check(v: Any) -> bool:
        if type(v) is not kind:
            return True
        return len(v) <= n if most else len(v) >= n

    return check


def _pattern(pattern: re.Pattern[str]) -> Check:
    return lambda v: type(v) is not str or pattern.search(v) is not None


def _bound(key: str, b: float) -> Check:
    # one closure per bound, no comparison function called through it: this runs for every number of a reply
    if key == "minimum":
        return lambda v: v >= b if type(v) is int or type(v) is float else True
    if key == "maximum":
        return lambda v: v <= b if type(v) is int or type(v) is float else True
    if key == "exclusiveMinimum":
        return lambda v: v > b if type(v) is int or type(v) is float else True
    return lambda v: v < b if type(v) is int or type(v) is float else True


def _unique(items: list[Any]) -> bool:
    kinds = {type(i) for i in items}
    if len(kinds) <= 1 and kinds <= {int, str}:  # hashable, and equal exactly when == (no bool, no 1 and 1.0)
        return len(set(items)) == len(items)
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if equal(a, b):
                return False
    return True
