"""``models.<name>.fallback``: the models that stand in when a model fails (issue 23).

``{models: [b, c], on: [429, 5xx, timeout, connect, context_length], cooldown: 60}``: after a failure of a
cause named in ``on``, the call's next attempt goes to the next model in ``models``; after a 429 the model is
skipped for ``cooldown`` seconds. How it runs: :mod:`runner.providers.fallback`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CAUSES = ("429", "5xx", "timeout", "connect", "context_length")
"""The failures a fallback can name, in the schema's order."""

DEFAULT_ON = ("429", "5xx", "timeout", "connect")
"""Without ``on``: every transient failure; a context-length error moves only when named (a larger model)."""


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    """The models tried, in order, after the model itself; the causes that move a call; the 429 cooldown."""

    models: tuple[str, ...]
    on: frozenset[str] = frozenset(DEFAULT_ON)
    cooldown: float = 60.0


def parse_fallback(raw: Mapping[str, Any] | None) -> FallbackConfig | None:
    """The record of a schema-valid ``fallback`` mapping, or None when the model has none."""
    if raw is None:
        return None
    return FallbackConfig(
        models=tuple(raw["models"]),
        on=frozenset(str(cause) for cause in raw.get("on", DEFAULT_ON)),
        cooldown=float(raw.get("cooldown", 60.0)),
    )
