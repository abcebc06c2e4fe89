"""``assert:`` lists (issue 24): checks of the workflow's final output (top level) or of one stage's output, in
promptfoo's vocabulary, as frozen records. What can be known from the file alone is refused here with a
:class:`~runner.errors.ConfigError` at the offending key (a regex that does not compile, a ``close`` without its
tolerance, a JSON Schema that is not one), so ``runner validate`` reports it located; the templates, the judge
model and Python functions are checked by ``runner/validate/rules/asserts.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.errors import ConfigError

KINDS = (
    "equals",
    "contains",
    "icontains",
    "regex",
    "starts_with",
    "is-json",
    "json_schema",
    "one_of",
    "close",
    "python",
    "llm-rubric",
    "tool-call",
    "similar",
    "latency",
    "tokens",
    "cost",
)
ROW_LIMITS = ("latency", "tokens", "cost")  # the row's figures: only in the top-level list
NEEDS_VALUE = (
    "equals",
    "contains",
    "icontains",
    "regex",
    "starts_with",
    "json_schema",
    "one_of",
    "close",
    "python",
    "similar",
)
SIMILAR_THRESHOLD = 0.75  # similar's cosine similarity to reach when no threshold is given (promptfoo's default)


@dataclass(frozen=True, slots=True)
class AssertSpec:
    """One assertion: ``kind`` (``type:``), ``value`` (a :class:`TemplateSrc` for text, else the YAML value; a
    list's text items are templates too), ``path`` (the part of the output checked: ``data.label``), ``weight``,
    ``threshold`` (the score a scored kind must reach), ``negate`` (``not:``), ``tolerance`` (close), ``max``
    (latency, tokens, cost), ``model`` and ``rubric`` (llm-rubric), ``tool`` and ``arguments``
    (tool-call: the argument names and the values they must have, text values templates), ``embedder`` (similar),
    ``name`` (how reports call it) and ``loc``."""

    kind: str
    name: str
    value: Any
    path: str | None
    weight: float
    threshold: float | None
    negate: bool
    tolerance: float | None
    max: float | None
    model: str | None
    rubric: TemplateSrc | None
    loc: Loc
    yaml_path: tuple[str | int, ...] = ()
    tool: str | None = None
    arguments: tuple[tuple[str, Any], ...] | None = None
    embedder: str | None = None


@dataclass(frozen=True, slots=True)
class AssertList:
    """The ``assert:`` list of the top level (``stage`` None) or of one stage, and the share of rows that must
    pass it (``threshold``, default 1: every row)."""

    stage: str | None
    threshold: float
    items: tuple[AssertSpec, ...]
    loc: Loc

    @property
    def scope(self) -> str:
        return "assert" if self.stage is None else f"stages.{self.stage}.assert"


def parse_assert(
    raw: Mapping[str, Any],
    index: int,
    stage: str | None,
    template: Callable[[tuple[str | int, ...]], TemplateSrc],
    loc: Loc,
    yaml_path: tuple[str | int, ...],
) -> AssertSpec:
    """The record of one schema-valid assertion mapping; ``template(rel)`` gives the template at a key path
    relative to it. Raises :class:`ConfigError` at the key a run would trip on."""
    kind = raw["type"]
    scope = "assert" if stage is None else f"stages.{stage}.assert"
    if kind in NEEDS_VALUE and "value" not in raw:
        raise ConfigError(f"{kind} needs a value", (), _VALUE_HINTS.get(kind, "add value: ..."))
    if kind in ROW_LIMITS:
        if stage is not None:
            raise ConfigError(
                f"{kind} limits a whole row: it goes in the top-level assert, not a stage's",
                ("type",),
                "move it to the workflow's top-level assert list",
            )
        if "max" not in raw:
            raise ConfigError(f"{kind} needs max", (), f"add max: N ({_UNITS[kind]})")
    if kind == "close" and "tolerance" not in raw:
        raise ConfigError("close needs a tolerance", (), "add tolerance: 0.01 (the largest difference allowed)")
    if kind == "llm-rubric":
        missing = [key for key in ("model", "rubric") if key not in raw]
        if missing:
            raise ConfigError(
                f"llm-rubric needs {' and '.join(missing)}",
                (),
                "add model: <a model under models> and rubric: what the judge checks",
            )
    if kind == "tool-call" and "tool" not in raw:
        raise ConfigError(
            "tool-call needs tool", (), "add tool: <a tool under tools>, and arguments: {name: value} to match"
        )
    if kind == "similar" and "embedder" not in raw:
        raise ConfigError("similar needs an embedder", (), "add embedder: <an embedder declared under embeddings>")
    value: Any = raw.get("value")
    if isinstance(value, str):
        value = template(("value",))
        if kind == "regex" and "{{" not in value.text and "{%" not in value.text:
            _compile(value.text)
        if kind == "python" and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value.text):
            raise ConfigError(
                f"python: {value.text!r} is not module:function",
                ("value",),
                "write module:function, e.g. checks:label_matches (the module is found beside the workflow file)",
            )
    elif kind in ("equals", "contains", "icontains", "regex", "starts_with", "python", "similar") and not isinstance(
        value, int | float | bool
    ):
        raise ConfigError(f"{kind}: value must be text (a template) or a number", ("value",))
    if kind == "one_of":
        if not isinstance(value, list) or not value:
            raise ConfigError("one_of: value must be a non-empty list", ("value",), "write value: [a, b, c]")
        value = tuple(template(("value", i)) if isinstance(v, str) else v for i, v in enumerate(value))
    if kind == "json_schema":
        if isinstance(value, TemplateSrc):
            raise ConfigError("json_schema: value must be a JSON Schema (a mapping), not text", ("value",))
        from runner.structured import schema_problem, schema_problem_path  # noqa: PLC0415 - jsonschema

        problem = schema_problem(value)
        if problem is not None:
            raise ConfigError(
                f"json_schema: value is {problem}" if problem.startswith("not ") else f"json_schema: {problem}",
                ("value", *schema_problem_path(value)),
            )
    if kind == "close" and isinstance(value, bool):
        raise ConfigError("close: value must be a number or a template giving one", ("value",))
    name = raw.get("metric") or f"{scope}[{index}] {kind}"
    return AssertSpec(
        kind=kind,
        name=name,
        value=value,
        path=raw.get("path"),
        weight=float(raw.get("weight", 1.0)),
        threshold=raw.get("threshold"),
        negate=bool(raw.get("not", False)),
        tolerance=raw.get("tolerance"),
        max=raw.get("max"),
        model=raw.get("model"),
        rubric=template(("rubric",)) if "rubric" in raw else None,
        loc=loc,
        yaml_path=yaml_path,
        tool=raw.get("tool"),
        arguments=tuple(
            (key, template(("arguments", key)) if isinstance(v, str) else v)
            for key, v in (raw.get("arguments") or {}).items()
        )
        if "arguments" in raw
        else None,
        embedder=raw.get("embedder"),
    )


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"regex: {pattern!r} does not compile: {exc}",
            ("value",),
            "fix the pattern (Python's re syntax; in YAML, quote it with single quotes to keep backslashes)",
        ) from None


_UNITS = {"latency": "seconds", "tokens": "prompt and completion tokens", "cost": "US dollars"}
_VALUE_HINTS = {
    "python": "add value: module:function (sync or async; returns a bool, a score in [0, 1] or {pass, score, reason})",
    "one_of": "add value: [a, b, c]",
    "close": "add value: a number (or a template giving one) and tolerance",
    "json_schema": "add value: a JSON Schema, e.g. {type: object, required: [label]}",
    "similar": "add value: the text the output must be close to (a template: {{ row.expected }})",
}
