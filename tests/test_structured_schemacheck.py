"""runner/schemacheck.py against jsonschema: on generated schemas and values the compiled check agrees with
jsonschema's verdict, and never calls valid what jsonschema refuses; what it does not know it leaves to jsonschema
(issue 16: structured replies are checked on every call, so the common case must be cheap)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runner.schemacheck import compile_schema, equal
from runner.structured import check_reply, mismatches

pytestmark = pytest.mark.timeout(60)

SCALARS: list[Any] = [None, True, False, 0, 1, 2.0, 2.5, -3, "", "a", "abc", "B-12", 10**20]


def random_schema(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.25:
        return rng.choice(
            [
                {"type": "string", "minLength": rng.randint(0, 3)},
                {"type": "string", "maxLength": 2, "pattern": "^[a-z]*$"},
                {"type": "integer", "minimum": rng.randint(-2, 2)},
                {"type": "number", "exclusiveMaximum": 2.5},
                {"type": ["integer", "null"], "exclusiveMinimum": 0},
                {"type": "boolean"},
                {"enum": rng.sample(SCALARS, 3)},
                {"const": rng.choice(SCALARS)},
                {"minimum": 1},
                True,
                {},
            ]
        )
    shape = rng.choice(["object", "array", "anyOf", "allOf"])
    if shape == "object":
        names = rng.sample(["a", "b", "c", "d"], rng.randint(0, 3))
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {n: random_schema(rng, depth + 1) for n in names},
            "required": rng.sample(names, rng.randint(0, len(names))),
        }
        choice = rng.random()
        if choice < 0.3:
            schema["additionalProperties"] = False
        elif choice < 0.5:
            schema["additionalProperties"] = random_schema(rng, depth + 1)
        if rng.random() < 0.2:
            schema["maxProperties"] = 2
        return schema
    if shape == "array":
        out = {"type": "array", "items": random_schema(rng, depth + 1), "minItems": rng.randint(0, 2)}
        if rng.random() < 0.3:
            out["uniqueItems"] = True
        if rng.random() < 0.3:
            out["maxItems"] = 2
        return out
    return {shape: [random_schema(rng, depth + 1) for _ in range(rng.randint(1, 3))]}


def random_value(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(SCALARS)
    if rng.random() < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {k: random_value(rng, depth + 1) for k in rng.sample(["a", "b", "c", "d", "e"], rng.randint(0, 4))}


def test_the_compiled_check_agrees_with_jsonschema_on_generated_cases() -> None:
    rng = random.Random(16)
    agreed = valid = 0
    for _ in range(400):
        schema = random_schema(rng)
        check = compile_schema(schema)
        assert check is not None, schema  # every keyword generated here is one it compiles
        validator = Draft202012Validator(schema)
        for _ in range(8):
            value = random_value(rng) if rng.random() < 0.7 else _instance(schema, rng)
            expected = validator.is_valid(value)
            assert check(value) == expected, (json.dumps(schema), json.dumps(value))
            agreed += 1
            valid += expected
    assert agreed == 3200 and valid > 300  # the cases reach both verdicts


def _instance(schema: Any, rng: random.Random) -> Any:
    """A value likelier to be valid than a random one: the schema's own shape filled in."""
    if not isinstance(schema, dict):
        return rng.choice(SCALARS)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if schema.get("type") == "object":
        return {k: _instance(v, rng) for k, v in schema["properties"].items()}
    if schema.get("type") == "array":
        return [_instance(schema["items"], rng) for _ in range(schema["minItems"])]
    if "anyOf" in schema:
        return _instance(schema["anyOf"][0], rng)
    return rng.choice(SCALARS)


@pytest.mark.parametrize(
    "schema",
    [
        {"oneOf": [{"type": "string"}]},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"if": {"type": "string"}, "then": {"minLength": 1}},
        {"$ref": "https://example.com/schema.json"},
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"type": "strin"},
    ],
)
def test_what_it_does_not_know_is_left_to_jsonschema(schema: Any) -> None:
    assert compile_schema(schema) is None


def test_formats_and_refs() -> None:
    schema = {
        "type": "object",
        "properties": {"when": {"type": "string", "format": "date"}, "next": {"$ref": "#"}},
        "additionalProperties": False,
    }
    check = compile_schema(schema)
    assert check is not None
    assert check({"next": {"next": {}}}) is True  # recursive through "#"
    assert check({"next": {"other": 1}}) is False
    assert check({"when": "2026-12-06"}) is False  # not sure: a format is jsonschema's to judge
    assert mismatches({"when": "2026-12-06"}, schema) == []  # ... and jsonschema accepts it
    assert [str(m) for m in mismatches({"when": "06/12/2026"}, schema)] == ["at $.when: '06/12/2026' is not a 'date'"]


def test_json_equality_is_jsonschemas() -> None:
    assert equal(1, 1.0) and not equal(1, True) and not equal(0, False) and not equal("1", 1)
    assert equal([1, {"a": 2.0}], [1.0, {"a": 2}]) and not equal([1], [1, 1]) and not equal({"a": 1}, {"b": 1})
    check = compile_schema({"uniqueItems": True})
    assert check is not None and check([1, True]) is True and check([1, 1.0]) is False and check(["a", "a"]) is False


def test_a_valid_reply_is_checked_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.structured as structured

    def refuse(schema: Any) -> Any:
        raise AssertionError("jsonschema was asked about a reply the compiled check accepts")

    monkeypatch.setattr(structured, "_validator", refuse)
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 1}}}
    assert check_reply('{"n": 3}', schema) == {"n": 3}
