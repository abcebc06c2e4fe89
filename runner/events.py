"""Structured run events, recorded cheaply: one tuple append per event, no formatting on the hot path.

Times are ``time.perf_counter()`` readings; the report turns them into seconds since the run started.
"""

from __future__ import annotations

import time
from typing import Any

Event = tuple[float, str, str, Any]


class Recorder:
    """Collects ``(time, kind, node_id, data)`` events; data objects must not change afterwards.

    Kinds in use: ``queued``, ``started``,
    ``first_token``, ``finished``, ``failed``, ``cancelled``, ``skipped``, ``retry``, ``pool_wait``,
    ``rate_wait``, ``cache``, ``memory``."""

    __slots__ = ("events", "clock")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.clock = time.perf_counter

    def emit(self, kind: str, node_id: str, data: Any = None, at: float | None = None) -> None:
        """Record one event. ``data`` is a mapping, or for ``finished`` agent calls the ChatResult itself."""
        self.events.append((self.clock() if at is None else at, kind, node_id, data))
