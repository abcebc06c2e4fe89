"""Settings of the built-in ``scripted`` provider (kept free of heavy imports: ``runner validate`` reads it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.spec.records import Loc, TemplateSrc


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    name: str
    arguments: Mapping[str, Any]  # string values (at any depth) are templates, rendered per call


@dataclass(frozen=True, slots=True)
class ScriptedTurn:
    """What the model does on one call of an agent's turn: reply, call tools, or fail."""

    reply: TemplateSrc | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    fail: TemplateSrc | None = None


@dataclass(frozen=True, slots=True)
class ScriptedConfig:
    reply: TemplateSrc
    stream: bool = True
    first_token_ms: float = 0.0
    tokens_per_second: float = 0.0
    turns: tuple[ScriptedTurn, ...] = ()
    context_window: int | None = None  # tokens; only for the memory-budget check of runner validate


def parse_scripted(
    raw: Mapping[str, Any], template: Callable[[tuple[str | int, ...]], TemplateSrc], loc: Loc
) -> ScriptedConfig:
    reply = template(("reply",)) if "reply" in raw else TemplateSrc("{{ input }}", loc)
    latency = raw.get("latency") or {}
    turns = tuple(
        ScriptedTurn(
            reply=template(("turns", i, "reply")) if "reply" in turn else None,
            tool_calls=tuple(
                ScriptedToolCall(call["name"], dict(call.get("arguments") or {})) for call in turn.get("tool_calls", ())
            ),
            fail=template(("turns", i, "fail")) if "fail" in turn else None,
        )
        for i, turn in enumerate(raw.get("turns") or ())
    )
    return ScriptedConfig(
        reply=reply,
        stream=bool(raw.get("stream", True)),
        first_token_ms=float(latency.get("first_token_ms", 0)),
        tokens_per_second=float(latency.get("tokens_per_second", 0)),
        turns=turns,
        context_window=raw.get("context_window"),
    )
