"""Human gates (issue 23): what an ``approve`` or ``ask`` stage asks, what comes back, and how an answer is read
and checked. Shared by the two kinds (``approve.py``, ``ask.py``), the engine's gatekeeper
(``runner/engine/gates.py``), the terminal prompt (``runner/commands/gateprompt.py``) and the public API's
``on_gate`` callback.

Where a decision comes from is the engine's business (:class:`Gatekeeper`): the stage kinds only ask.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runner.events import Recorder

APPROVE, ASK = "approve", "ask"


@dataclass(frozen=True, slots=True)
class GateRequest:
    """What a gate asks a person, as ``on_gate`` receives it.

    ``stage``: the gate's node id (``review``; ``items[2].check`` inside a fan-out's pipeline); ``kind``:
    ``approve`` or ``ask``; ``text``: the rendered ``message`` or ``question``; ``shown``: for ``approve``, the
    text of each ``show`` stage's output by stage id; ``schema``: for ``ask``, the JSON Schema the answer must
    match; ``timeout``: how long the person has (None: no limit); ``on_timeout``: what happens then, for an
    ``approve`` its own (``reject`` or ``approve``), for an ``ask`` ``answer`` (``default`` is the answer) or
    ``fail``."""

    stage: str
    kind: str
    text: str
    shown: Mapping[str, str] = field(default_factory=dict)
    schema: Any = None
    timeout: float | None = None
    on_timeout: str | None = None
    default: Any = None


@dataclass(frozen=True, slots=True)
class Decision:
    """An ``approve`` gate's decision: ``approved``, the person's ``reason`` (optional) and who decided (``by``:
    ``terminal``, ``on_gate``, ``command line``, ``timeout``)."""

    approved: bool
    reason: str | None = None
    by: str = "on_gate"


class Gatekeeper(Protocol):
    """Where gates get their decisions: :class:`Decision` for an ``approve``, the checked answer for an ``ask``.
    Raises :class:`runner.errors.GateWaiting` when there is no one to ask and no answer was given."""

    async def decide(self, request: GateRequest, recorder: Recorder) -> Any:
        """The decision or answer; each is a ``gate`` event on ``recorder`` (the report's ``run.gates``)."""


def plain_field(schema: Any) -> tuple[str | None, Mapping[str, Any]] | None:
    """For a schema that one plain value answers: (the field's name, or None for the whole answer; the field's
    schema). A string, number, integer or enum, or an object of exactly one such property. None otherwise."""
    if not isinstance(schema, Mapping):
        return None
    if _plain(schema):
        return None, schema
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, Mapping):
        return None
    required = schema.get("required") or []
    names = list(props) if len(props) == 1 else list(required) if len(required) == 1 else []
    if len(names) == 1 and isinstance(props.get(names[0]), Mapping) and _plain(props[names[0]]):
        return str(names[0]), props[names[0]]
    return None


def _plain(schema: Mapping[str, Any]) -> bool:
    return "enum" in schema or schema.get("type") in ("string", "number", "integer")


def read_answer(text: str, schema: Any) -> Any:
    """An answer as typed (on a terminal, or after ``--answer STAGE=``): JSON, or, for a schema one plain value
    answers (:func:`plain_field`), that value (a number read as one). Raises ``ValueError`` saying why not."""
    plain = plain_field(schema)
    if plain is None:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the answer is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    name, inner = plain
    value: Any = text.strip()
    if name is not None and value.startswith("{"):  # the whole object, as JSON
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    if inner.get("type") in ("number", "integer") or (
        "enum" in inner and not any(isinstance(v, str) for v in inner["enum"])
    ):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # left as text: the schema check says what was wanted
    elif value.startswith('"'):  # a JSON string, quotes and escapes
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    return value if name is None else {name: value}


def answer_text(value: Any) -> str:
    """An answer as later stages' default input and ``stages.<id>.content`` see it: text as is, else JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
