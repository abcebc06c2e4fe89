"""Settings of the built-in ``scripted`` provider (kept free of heavy imports: ``runner validate`` reads it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.config.pricing import Pricing, parse_pricing
from runner.config.source import Loc, TemplateSrc


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    """A tool call a scripted model makes: the tool's name and its arguments (templates)."""

    name: str
    arguments: Mapping[str, Any]  # string values (at any depth) are templates, rendered per call
    # those templates located in the workflow file, by their path inside ``arguments`` (issue 21: a template
    # error there was reported at "<scripted tool arguments>:1:1")
    templates: Mapping[tuple[str | int, ...], TemplateSrc] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScriptedTurn:
    """What the model does on one call of an agent's turn: reply, call tools, or fail."""

    reply: TemplateSrc | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    fail: TemplateSrc | None = None


@dataclass(frozen=True, slots=True)
class ScriptedConfig:
    """One ``models.<name>`` entry with ``provider: scripted``: the reply template, the simulated latency
    (``first_token_ms``, then ``tokens_per_second``; 0 sends the reply at once) and the scripted ``turns``."""

    reply: TemplateSrc
    stream: bool = True
    first_token_ms: float = 0.0
    tokens_per_second: float = 0.0
    turns: tuple[ScriptedTurn, ...] = ()
    context_window: int | None = None  # tokens; only for the memory-budget check of runner validate
    # whether ``reply`` was written (else it echoes the input): without one, a call that asks for a structured
    # output is answered with a value built from its schema (issue 16), so offline dry runs exercise it
    reply_given: bool = True
    pricing: Pricing | None = None  # what its tokens would cost (a dry run's cost estimate)

    # the rest of runner.config.models.ModelSettings: a simulated model has no key, endpoint, pool or retries
    @property
    def api_key_env(self) -> None:
        return None

    @property
    def remote_model(self) -> None:
        return None

    @property
    def pool(self) -> None:
        return None

    @property
    def rate_limit(self) -> None:
        return None

    @property
    def retry(self) -> None:
        return None

    def templates(self) -> tuple[TemplateSrc, ...]:
        """The reply, and each turn's reply and failure message."""
        found = [self.reply]
        for turn in self.turns:
            found += [src for src in (turn.reply, turn.fail) if src is not None]
        return tuple(found)


def parse_scripted(
    raw: Mapping[str, Any], template: Callable[[tuple[str | int, ...]], TemplateSrc], loc: Loc
) -> ScriptedConfig:
    reply = template(("reply",)) if "reply" in raw else TemplateSrc("{{ input }}", loc)
    latency = raw.get("latency") or {}
    turns = tuple(
        ScriptedTurn(
            reply=template(("turns", i, "reply")) if "reply" in turn else None,
            tool_calls=tuple(
                _tool_call(call, template, ("turns", i, "tool_calls", j))
                for j, call in enumerate(turn.get("tool_calls", ()))
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
        reply_given="reply" in raw,
        pricing=parse_pricing(raw.get("pricing")),
    )


def _tool_call(
    raw: Mapping[str, Any], template: Callable[[tuple[str | int, ...]], TemplateSrc], base: tuple[str | int, ...]
) -> ScriptedToolCall:
    arguments = dict(raw.get("arguments") or {})
    templates: dict[tuple[str | int, ...], TemplateSrc] = {}
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), arguments)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            templates[path] = template((*base, "arguments", *path))
        elif isinstance(value, Mapping):
            stack.extend(((*path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in enumerate(value))
    return ScriptedToolCall(raw["name"], arguments, templates)
