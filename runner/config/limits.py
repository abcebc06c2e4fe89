"""A run's budget: the top-level ``limits:`` of a workflow (issue 23), for a dataset batch each row's.

``enforce`` (the default) refuses a model call whose worst case would cross a limit and ends the run as failed;
``audit`` lets the run go on and warns once per limit. What "worst case" means is in :mod:`runner.engine.budget`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LIMITS = ("max_cost", "max_model_calls", "max_tokens", "max_duration")
"""The limits, in the order the schema and the README give them."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    """The limits a run keeps; None: no limit of that kind."""

    max_cost: float | None = None  # US dollars, from the models' pricing
    max_model_calls: int | None = None
    max_tokens: int | None = None  # input plus output tokens of every model call
    max_duration: float | None = None  # seconds after the run's start; no model call starts later
    mode: str = "enforce"  # enforce | audit

    def value(self, limit: str) -> float | int | None:
        """The setting of ``limit`` (one of :data:`LIMITS`)."""
        value: float | int | None = getattr(self, limit)
        return value


def parse_limits(raw: Mapping[str, Any] | None) -> RunLimits | None:
    """The record of a schema-valid ``limits`` mapping, or None when the workflow has none."""
    if raw is None:
        return None
    cost, duration = raw.get("max_cost"), raw.get("max_duration")
    return RunLimits(
        max_cost=None if cost is None else float(cost),
        max_model_calls=raw.get("max_model_calls"),
        max_tokens=raw.get("max_tokens"),
        max_duration=None if duration is None else float(duration),
        mode=raw.get("mode", "enforce"),
    )
