"""Structured run events, recorded cheaply: one tuple append per event, no formatting on the hot path.

Times are ``time.perf_counter()`` readings; the report turns them into seconds since the run started.
Readers (the report, the live progress line, the event log) consume ``Recorder.events`` after the fact or
tail it from a loop task with a cursor (:func:`tail`), so recording never waits on them.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from datetime import datetime
from typing import Any

Event = tuple[float, str, str, Any]

SPAN_KINDS = frozenset({"queued", "started", "first_token", "finished", "failed", "cancelled", "skipped"})
"""Kinds that open, advance or close a node's span."""

END_KINDS = frozenset({"finished", "failed", "cancelled", "skipped"})


class Recorder:
    """Collects ``(time, kind, node_id, data)`` events; data objects must not change afterwards.

    ``emit`` records one; the engine's per-branch hot path appends ``(clock(), kind, node_id, data)`` to
    ``events`` itself, which saves a call per event (a NullRecorder's ``events`` keeps nothing).

    Kinds and their data:

    * ``queued`` (None): a fan-out branch waits for a ``max_concurrency`` slot;
    * ``started`` ({"kind", "agent", "model"} for agent calls, {"kind": "fanout"} for fan-outs);
    * ``finished`` (an agent call's ChatResult itself; None for a fan-out), ``failed`` / ``cancelled``
      ({"error"});
    * ``retry`` ({"cause", "attempt", "delay", "error", ...}): an attempt failed at this time and the
      next follows after ``delay`` seconds;
    * ``rate_wait`` ({"wait", "limit"}): emitted when a wait for the rate limiter ends;
    * ``pool_wait`` ({"wait"}): emitted when a response arrives that waited for a pool connection;
    * ``tool`` ({"tool", "start", "error"?}): emitted when a tool call made by the node ends; ``start``
      is its ``perf_counter`` start;
    * ``stream_diverged`` ({"shown_chars"}).
    """

    __slots__ = ("events", "clock")

    enabled = True

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.clock = time.perf_counter

    def emit(self, kind: str, node_id: str, data: Any = None, at: float | None = None) -> None:
        """Record one event. ``data`` is a mapping, or for ``finished`` agent calls the ChatResult itself."""
        self.events.append((self.clock() if at is None else at, kind, node_id, data))


class _Discarded(list[Event]):
    """A list that keeps nothing: a NullRecorder's ``events``, for the hot paths that append to it directly."""

    __slots__ = ()

    def append(self, event: Event) -> None:
        return None


class NullRecorder(Recorder):
    """Records nothing: runs with recording off (the overhead benchmark's baseline). Its report has the run's
    metadata and wall time but no nodes."""

    __slots__ = ()

    enabled = False

    def __init__(self) -> None:
        super().__init__()
        self.events = _Discarded()

    def emit(self, kind: str, node_id: str, data: Any = None, at: float | None = None) -> None:
        return None


def tail(recorder: Recorder, cursor: int) -> tuple[list[Event], int]:
    """The events recorded since ``cursor`` and the new cursor: how loop tasks follow a run cheaply."""
    events = recorder.events
    end = len(events)
    if end == cursor:
        return [], cursor
    return events[cursor:end], end


# -- trace context (OpenTelemetry, issue 22) ------------------------------------------------------------------
# A run whose spans are exported derives its ids (runner/report/otel.py builds the spans with the same ones), so
# a request made during the run can name the span it belongs to before any span exists: the run's trace id is
# set in TRACE for the run's tasks, and an HTTP provider sends ``traceparent`` naming its node's span.

TRACE: ContextVar[int | None] = ContextVar("runner_trace", default=None)
"""The trace id of the run going on in this context, when its spans are exported; else None."""


def trace_id_of(run_id: str, started_at: str) -> int:
    """A run's trace id: 128 bits of a hash of its id and its start as the report writes it (never 0, which W3C
    forbids)."""
    import hashlib  # noqa: PLC0415 - only for a traced run

    digest = hashlib.blake2b(f"{run_id}\0{started_at}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big") or 1


def span_id_of(trace_id: int, key: str) -> int:
    """A node's span id: 64 bits of a hash of the trace id and the node's id (``""`` for the run's root)."""
    import hashlib  # noqa: PLC0415

    digest = hashlib.blake2b(key.encode(), digest_size=8, key=trace_id.to_bytes(16, "big")).digest()
    return int.from_bytes(digest, "big") or 1


def traceparent(trace_id: int, span_id: int) -> str:
    """The W3C ``traceparent`` header naming a span (sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def started_at_text(started_at: datetime) -> str:
    """A run's start as its report writes it (and its trace id is derived from)."""
    return started_at.isoformat().replace("+00:00", "Z")
