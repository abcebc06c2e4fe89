"""Adaptive concurrency: the rows a batch keeps in flight, adapted per model to what its server answers.

The rule is TCP's (additive increase, multiplicative decrease), as the evaluators that run against rate-limited
APIs do: a 429, or an answer with ``Retry-After``, halves the model's allowance of rows in flight; then each run
of as many successful answers as the allowance adds one row back, up to ``--concurrency``. A halving takes effect
once per window: the answers to requests already in flight when it happened (as many as were in flight) do not
halve it again, since they were sent at the old rate. An ``x-ratelimit-remaining-requests`` (or ``-tokens``)
header of 0 halves too; a remaining count below the allowance lowers it to that count, and no row is added back
while the server says so little is left.

Every row runs the workflow's models, so a row starts when the rows in flight are fewer than the smallest
allowance (:meth:`AdaptiveLimits.allowed`). Each change is kept, with when and why, for the batch report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class _Model:
    limit: int
    good: int = 0  # successful answers since the last change
    cooldown: int = 0  # answers still to come from requests sent before the last halving
    low: bool = False  # the server's last answer said little of its quota is left


class AdaptiveLimits:
    """The allowance of rows in flight of each model, between 1 and ``ceiling``. ``in_flight`` reads the rows in
    flight now; ``on_change`` is called after each change (the batch wakes rows waiting for room)."""

    def __init__(
        self,
        models: list[str],
        ceiling: int,
        in_flight: Callable[[], int],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.ceiling = ceiling
        self.models = {name: _Model(ceiling) for name in models}
        self.in_flight = in_flight
        self.on_change = on_change
        self.changes: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()

    def start(self) -> None:
        """Record each model's allowance as the batch starts: the first point of the report's concurrency line."""
        for name, state in self.models.items():
            self.changes.append({"at_s": 0.0, "model": name, "limit": state.limit, "reason": "the batch starts"})

    def allowed(self) -> int:
        """Rows that may be in flight now: the smallest allowance (``ceiling`` with no remote model)."""
        return min((m.limit for m in self.models.values()), default=self.ceiling)

    def observer(self, model: str) -> Callable[[int, Mapping[str, str]], None]:
        """The function a model's provider calls with each answer's status and headers."""
        return lambda status, headers: self.answer(model, status, headers)

    def answer(self, model: str, status: int, headers: Mapping[str, str]) -> None:
        state = self.models[model]
        settled = state.cooldown == 0  # the request was sent after the last halving, at the current rate
        if not settled:
            state.cooldown -= 1
        retry_after = headers.get("retry-after")
        if status == 429 or (retry_after is not None and status >= 400):
            if settled:
                why = f"HTTP {status}" + (f" with Retry-After: {retry_after}" if retry_after is not None else "")
                self._set(model, max(1, state.limit // 2), why, halved=True)
            return
        remaining = _remaining(headers)
        if remaining is not None:
            name, left = remaining
            state.low = left < state.limit
            if left == 0 and settled:
                self._set(model, max(1, state.limit // 2), f"{name}: 0", halved=True)
                return
            if 0 < left < state.limit:
                self._set(model, left, f"{name}: {left}")
                return
        else:
            state.low = False
        if status < 400:
            state.good += 1
            if state.good >= state.limit and state.limit < self.ceiling and not state.low:
                self._set(model, state.limit + 1, f"{state.good} answers in a row without a rate limit")

    def _set(self, model: str, limit: int, why: str, *, halved: bool = False) -> None:
        state = self.models[model]
        state.good = 0
        if halved:
            state.cooldown = max(self.in_flight(), 1)
        if limit == state.limit:
            return
        state.limit = limit
        self.changes.append(
            {"at_s": round(time.perf_counter() - self.t0, 3), "model": model, "limit": limit, "reason": why}
        )
        self.on_change()


def _remaining(headers: Mapping[str, str]) -> tuple[str, int] | None:
    """The lowest ``x-ratelimit-remaining-requests`` / ``-tokens`` the answer carries, by name; tokens count as a
    request's worth only at 0 (a count of tokens is no count of rows)."""
    found: tuple[str, int] | None = None
    for name in ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"):
        text = headers.get(name)
        if text is None:
            continue
        try:
            left = int(float(text))
        except ValueError:
            continue
        if name.endswith("tokens") and left > 0:
            continue
        if found is None or left < found[1]:
            found = (name, max(left, 0))
    return found
