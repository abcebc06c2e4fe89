"""What a model's tokens cost: ``models.<name>.pricing``, in US dollars per million tokens.

The run report and a dataset batch's report give each priced model's cost and their sum; a model without
``pricing`` is reported with ``cost_usd: null`` and counted among the unpriced calls, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PER = 1_000_000
"""Prices are per this many tokens, as providers publish them."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """US dollars per million input (prompt) and output (completion) tokens; ``cached_input``: per million input
    tokens read from the provider's prompt cache (None: they cost ``input``)."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, tokens_in: int, tokens_out: int, cached: int = 0) -> float:
        """The cost of these tokens, in US dollars; ``cached``: how many of ``tokens_in`` came from the cache."""
        cached = min(cached, tokens_in) if self.cached_input is not None else 0
        fresh = tokens_in - cached
        return (fresh * self.input + cached * (self.cached_input or 0.0) + tokens_out * self.output) / PER


def parse_pricing(raw: Mapping[str, Any] | None) -> Pricing | None:
    """The record for a schema-valid ``pricing`` mapping, or None when the model has none."""
    if raw is None:
        return None
    cached = raw.get("cached_input")
    return Pricing(
        input=float(raw["input"]),
        output=float(raw["output"]),
        cached_input=None if cached is None else float(cached),
    )
