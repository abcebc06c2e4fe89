"""What a model call gives back: its reply, its token usage and the tool calls it asks for.

Providers make these, the engine hands them on, and the report reads them from the run's events, so they sit
at the bottom of the house, below providers and report alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# Usage and ChatResult are made once per model call on the engine's hot path: plain slotted classes,
# because a frozen dataclass's __init__ costs four times as much (object.__setattr__ per field). They are
# values all the same: nothing changes them after they are made.
@dataclass(slots=True)
class Usage:
    """Tokens one model call used, as the provider reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those the provider read from its prompt cache (priced apart)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call a model asked for: its id, the tool's name and the arguments as JSON text."""

    id: str
    name: str
    arguments: str  # JSON text, as the wire carries it

    def as_message_part(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class ChatResult:
    """One model reply. ``first_token_at`` is a ``time.perf_counter()`` reading (None when not streamed
    or nothing came); ``attempts`` counts the requests made, retries included."""

    content: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    first_token_at: float | None = None
    attempts: int = 1
    finish_reason: str = "stop"
    # the model that answered, as the server named it (OpenTelemetry's gen_ai.response.model): metadata, left out
    # of comparisons, which are of the reply
    model: str | None = field(default=None, compare=False)
