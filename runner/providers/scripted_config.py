"""Settings of the built-in ``scripted`` provider (kept free of heavy imports: ``runner validate`` reads it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.spec.records import Loc, TemplateSrc


@dataclass(frozen=True, slots=True)
class ScriptedConfig:
    reply: TemplateSrc
    stream: bool = True
    first_token_ms: float = 0.0
    tokens_per_second: float = 0.0


def parse_scripted(
    raw: Mapping[str, Any], template: Callable[[tuple[str | int, ...]], TemplateSrc], loc: Loc
) -> ScriptedConfig:
    reply = template(("reply",)) if "reply" in raw else TemplateSrc("{{ input }}", loc)
    latency = raw.get("latency") or {}
    return ScriptedConfig(
        reply=reply,
        stream=bool(raw.get("stream", True)),
        first_token_ms=float(latency.get("first_token_ms", 0)),
        tokens_per_second=float(latency.get("tokens_per_second", 0)),
    )
