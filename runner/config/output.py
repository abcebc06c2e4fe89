"""A structured output (``output: {schema, max_repairs, strict}`` on an agent or an agent stage), as a frozen
record: the JSON Schema the reply must match, read from the file it names when it is a file reference.

Issue 16. The schema is checked here (draft 2020-12, through :func:`runner.structured.schema_problem`), so a
schema that is not one is a located ``runner validate`` error, at the offending key of an inline schema or at
the ``schema:`` line of a file reference, never a failure at run time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

DEFAULT_MAX_REPAIRS = 1


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What an agent's reply must be: ``schema`` (a JSON Schema, draft 2020-12) and how many repair turns a
    reply that does not match gets (``max_repairs``) before the stage fails. ``strict`` is passed to servers
    that enforce a schema natively (OpenAI's strict mode needs every property required and no additional
    ones). ``source`` is the file the schema came from, or None for an inline schema."""

    schema: Mapping[str, Any] | bool
    max_repairs: int = DEFAULT_MAX_REPAIRS
    strict: bool = False
    name: str = "output"
    source: str | None = None


def parse_output(raw: Mapping[str, Any], folder: Path, name: str) -> OutputSpec:
    """The record of one schema-valid ``output`` mapping; ``folder`` is the workflow's (file references are
    relative to it), ``name`` the agent or stage it belongs to (the schema's name on the wire)."""
    schema: Any = raw.get("schema")
    source: str | None = None
    if isinstance(schema, str):
        source = schema
        schema = _read_schema_file(folder, schema)
    from runner.structured import schema_problem, schema_problem_path  # noqa: PLC0415 - jsonschema, only here

    problem = schema_problem(schema)
    if problem is not None:
        if source is not None:
            raise ConfigError(
                f"output.schema: the schema in {source} is {problem}"
                if problem.startswith("not ")
                else f"output.schema: the schema in {source}: {problem}",
                ("schema",),
                f"fix {source}: it must be a JSON Schema (draft 2020-12)",
            )
        raise ConfigError(
            f"output.schema is {problem}" if problem.startswith("not ") else f"output.schema: {problem}",
            ("schema", *schema_problem_path(schema)),
            "write a JSON Schema (draft 2020-12), e.g. {type: object, properties: {answer: {type: string}}}",
        )
    max_repairs = raw.get("max_repairs", DEFAULT_MAX_REPAIRS)
    if isinstance(max_repairs, bool) or not isinstance(max_repairs, int) or max_repairs < 0:
        raise ConfigError(
            f"output.max_repairs must be a whole number >= 0, not {max_repairs!r}",
            ("max_repairs",),
            "write 0 (no repair turn) or more",
        )
    strict = raw.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"output.strict must be true or false, not {strict!r}", ("strict",), "write true or false")
    assert isinstance(schema, Mapping | bool)  # schema_problem refused anything else
    return OutputSpec(schema, max_repairs, strict, _wire_name(name), source)


def _wire_name(name: str) -> str:
    # OpenAI's json_schema.name: letters, digits, '_' and '-', at most 64 characters
    clean = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]
    return clean or "output"


def _read_schema_file(folder: Path, ref: str) -> Any:
    path = folder / ref
    hint = f"write the path of a JSON or YAML file relative to the workflow's folder ({folder})"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"output.schema names {ref}, which does not exist", ("schema",), hint) from None
    except IsADirectoryError:
        raise ConfigError(f"output.schema names {ref}, which is a folder, not a file", ("schema",), hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"output.schema names {ref}, which cannot be read: {exc}", ("schema",), hint) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"output.schema: the schema in {ref} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                ("schema",),
                f"fix {ref}",
            ) from None
    import yaml  # noqa: PLC0415 - a YAML schema file only

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"output.schema: the schema in {ref} is not YAML{at}", ("schema",), f"fix {ref}") from None
