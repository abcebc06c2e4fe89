"""One agent's working-memory figures, for the timing report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class MemoryStats:
    """One agent's memory figures for the report.

    ``tokens_before`` is the full history, ``tokens_after`` what was sent, both at the last turn (a turn is a
    ``WorkingMemory.context()`` call); the ``_total`` fields add them up over all turns, so their difference
    is what the memory saved. ``summary_seconds`` is the wall time of making snapshots and
    ``summary_wait_seconds`` the part of it that turns waited for: the time on the critical path (a snapshot
    made ahead, in the background, overlaps the agent's model calls). ``summaries_ahead`` counts those.
    ``summary_call_seconds`` adds up the summary calls, more than the wall time when groups ran
    concurrently. ``manage_seconds`` is all time spent in ``context()``, waits for snapshots included.
    """

    agent: str
    mode: str
    budget: int
    messages: int = 0
    turns: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    max_tokens_after: int = 0
    tokens_before_total: int = 0
    tokens_after_total: int = 0
    over_budget_turns: int = 0
    compactions: int = 0
    elisions: int = 0
    elided_messages: int = 0
    summaries: int = 0
    summaries_ahead: int = 0
    summary_calls: int = 0
    summarised_messages: int = 0
    summary_seconds: float = 0.0
    summary_wait_seconds: float = 0.0
    summary_call_seconds: float = 0.0
    manage_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
