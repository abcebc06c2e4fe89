"""Structured outputs (runner/structured.py): replies parsed and checked against a schema with messages that say
where, and values built from a schema for offline runs (issue 16)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runner.structured import (
    NoExample,
    StructuredError,
    check_reply,
    example_value,
    json_path,
    mismatches,
    parse_reply,
    repair_prompt,
    schema_problem,
)

PLAN = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {"title": {"type": "string", "minLength": 3}, "priority": {"enum": ["high", "low"]}},
                "required": ["title", "priority"],
                "additionalProperties": False,
            },
        },
        "done": {"type": "boolean"},
    },
    "required": ["tasks"],
}


def test_a_reply_that_matches_gives_its_value() -> None:
    reply = '{"tasks": [{"title": "one", "priority": "high"}, {"title": "two", "priority": "low"}]}'
    assert check_reply(reply, PLAN) == json.loads(reply)


@pytest.mark.parametrize("fence", ["```json\n{}\n```", "```\n{}\n```", "  ```JSON\n{}\n```  \n"])
def test_a_fenced_reply_is_read_inside_its_fence(fence: str) -> None:
    assert parse_reply(fence.replace("{}", '{"a": 1}')) == {"a": 1}


def test_a_mismatch_says_where_in_the_value_and_what_was_wanted() -> None:
    reply = '{"tasks": [{"title": "one", "priority": "high"}, {"title": "two", "priority": "urgent"}]}'
    with pytest.raises(StructuredError) as caught:
        check_reply(reply, PLAN)
    assert caught.value.problem == (
        'the value does not match the schema at $.tasks[1].priority: expected one of "high", "low", got "urgent"'
    )
    assert caught.value.describe().endswith(f"; the reply began: {reply!r}")
    long = StructuredError("bad", "x" * 300)
    assert long.describe() == f"bad; the reply began: {'x' * 200!r}..."


def test_missing_fields_types_and_extra_fields_are_named() -> None:
    found = mismatches({"tasks": [{"title": 3, "extra": 1}]}, PLAN)
    text = [str(m) for m in found]
    assert "at $.tasks: expected at least 2 items" not in text  # jsonschema's words, checked below as they are
    assert "at $.tasks[0].title: expected string, got integer" in text
    assert "at $.tasks[0]: missing required field 'priority'" in text
    assert any(t.startswith("at $.tasks[0]: unexpected field(s)") for t in text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the reply is empty, not JSON"),
        ("Sure! Here it is: {", "the reply is not JSON (Expecting value at line 1, column 1)"),
        ('{"tasks": [{"title": "on', "the reply is not complete JSON (Unterminated string starting at line 1, "),
        ('{"tasks": [', "the reply is not complete JSON (Expecting value at line 1, column 12): it may have"),
    ],
)
def test_text_that_is_not_json_is_a_clear_error(text: str, problem: str) -> None:
    with pytest.raises(StructuredError) as caught:
        parse_reply(text)
    assert caught.value.problem.startswith(problem)


def test_the_repair_prompt_carries_the_problem_and_the_schema() -> None:
    error = StructuredError("the reply is not JSON (Expecting value at line 1, column 1)", "nope")
    prompt = repair_prompt(error, PLAN)
    assert prompt.startswith("Your last reply could not be used: the reply is not JSON (Expecting value")
    assert json.dumps(PLAN, ensure_ascii=False) in prompt


def test_json_paths() -> None:
    assert json_path([]) == "$"
    assert json_path(["a", 0, "b c", "d"]) == '$.a[0]["b c"].d'


def test_schema_problems_are_named() -> None:
    assert schema_problem(PLAN) is None
    assert schema_problem({"type": "strin"}) is not None
    assert schema_problem([1]) == "a JSON Schema is a mapping (or true/false), not list"
    problem = schema_problem({"properties": {"a": {"minItems": -1}}})
    assert problem is not None and "(at schema.properties.a.minItems)" in problem


SCHEMAS: list[tuple[str, dict[str, Any], Any]] = [
    ("const", {"const": "fixed"}, "fixed"),
    ("examples first", {"type": "string", "examples": ["a", "b"]}, "a"),
    ("default", {"type": "integer", "default": 7}, 7),
    ("first enum value", {"enum": ["x", "y"]}, "x"),
    ("string", {"type": "string"}, ""),
    ("minLength", {"type": "string", "minLength": 3}, "xxx"),
    ("format", {"type": "string", "format": "date"}, "2026-01-01"),
    ("integer bounds", {"type": "integer", "minimum": 3, "maximum": 9}, 3),
    ("exclusive", {"type": "integer", "exclusiveMinimum": 3}, 4),
    ("multipleOf", {"type": "number", "minimum": 1, "multipleOf": 5}, 5),
    ("boolean", {"type": "boolean"}, False),
    ("null", {"type": "null"}, None),
    ("nullable", {"type": ["null", "string"]}, ""),
    ("minItems", {"type": "array", "items": {"type": "integer"}, "minItems": 2}, [0, 0]),
    ("prefixItems", {"type": "array", "prefixItems": [{"const": 1}, {"type": "string"}]}, [1, ""]),
    ("contains", {"type": "array", "contains": {"const": "c"}}, ["c"]),
    ("oneOf", {"oneOf": [{"type": "integer"}, {"type": "string"}]}, 0),
    ("allOf", {"allOf": [{"properties": {"a": {"type": "integer"}}}, {"required": ["b"]}]}, {"a": 0, "b": None}),
    (
        "$ref",
        {"$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer"}}}}, "$ref": "#/$defs/item"},
        {"n": 0},
    ),
]


@pytest.mark.parametrize(("name", "schema", "expected"), SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_a_value_built_from_a_schema_matches_it(name: str, schema: dict[str, Any], expected: Any) -> None:
    value = example_value(schema)
    assert value == expected
    assert not list(Draft202012Validator(schema).iter_errors(value))


def test_every_field_of_an_object_is_filled_so_templates_can_read_them() -> None:
    value = example_value(PLAN)
    assert value == {
        "tasks": [{"title": "xxx", "priority": "high"}, {"title": "xxx", "priority": "high"}],
        "done": False,
    }


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "^[A-Z]{3}$"}, "cannot make a string that matches the pattern '^[A-Z]{3}$'"),
        ({"type": "integer", "minimum": 5, "maximum": 3}, "cannot make a number between 5 and 3"),
        ({"type": "array", "minItems": 2, "uniqueItems": True}, "the schema asks for unique items but gives no"),
        (False, "the schema is false: no value matches it"),
        ({"$ref": "#/$defs/none"}, "the reference '#/$defs/none' points at nothing in the schema"),
    ],
)
def test_what_cannot_be_built_says_what_to_add(schema: Any, message: str) -> None:
    with pytest.raises(NoExample) as caught:
        example_value(schema)
    assert str(caught.value).startswith(message)


def test_a_built_value_that_fails_its_schema_is_refused_with_the_reason() -> None:
    # the first oneOf choice matches both branches: oneOf wants exactly one
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    with pytest.raises(NoExample) as caught:
        example_value(schema)
    assert str(caught.value).startswith("cannot build a value that matches this schema (at $: ")
    assert str(caught.value).endswith(
        "add an example to the schema (examples: [...]) or give the scripted model a reply"
    )
