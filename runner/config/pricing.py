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
    """US dollars per million input (prompt) and output (completion) tokens."""

    input: float
    output: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """The cost of these tokens, in US dollars."""
        return (tokens_in * self.input + tokens_out * self.output) / PER


def parse_pricing(raw: Mapping[str, Any] | None) -> Pricing | None:
    """The record for a schema-valid ``pricing`` mapping, or None when the model has none."""
    if raw is None:
        return None
    return Pricing(input=float(raw["input"]), output=float(raw["output"]))
