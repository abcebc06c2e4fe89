"""The typed events a program receives from a run (``runner.stream``, ``runner.arun(on_event=...)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.calls import Usage

if TYPE_CHECKING:
    from runner.result import Result

__all__ = [
    "Event",
    "NodeCancelled",
    "NodeFailed",
    "NodeFinished",
    "NodeQueued",
    "NodeSkipped",
    "NodeStarted",
    "Retry",
    "RunFinished",
    "StreamRestarted",
    "Token",
]


# -- the events -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a run. ``at``: seconds since the run started (the report's clock);
    ``node``: the node's id as the report names it (``notes[2]`` is branch 2 of fan-out ``notes``,
    ``agent.tool[0.1]`` a tool call; ``""`` for the run itself)."""

    at: float
    node: str


@dataclass(frozen=True, slots=True)
class NodeQueued(Event):
    """A fan-out branch waits for a ``max_concurrency`` slot."""


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    """A node started. ``kind``: ``agent``, ``python``, ``fanout`` or ``tool``; ``agent`` and ``model`` for
    agent calls; ``name``: the tool's name or the python stage's function."""

    kind: str
    agent: str | None = None
    model: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class NodeFinished(Event):
    """A node ended well, ``elapsed`` seconds after it started. For an agent call: its reply's ``content``,
    ``usage`` (tokens), ``first_token`` (seconds since the run started; None when not streamed) and
    ``attempts`` (requests made, retries included); None for other kinds."""

    kind: str
    elapsed: float
    content: str | None = None
    usage: Usage | None = None
    first_token: float | None = None
    attempts: int | None = None


@dataclass(frozen=True, slots=True)
class NodeFailed(Event):
    """A node failed (``error`` says why); under ``on_error: collect`` the run goes on."""

    kind: str
    elapsed: float | None
    error: str


@dataclass(frozen=True, slots=True)
class NodeCancelled(Event):
    """A node was stopped: a sibling failed under ``fail_fast``, a timeout fired, or the run was cancelled."""

    kind: str
    elapsed: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class NodeSkipped(Event):
    """A stage's ``when`` was false (``reason`` says what it gave)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry(Event):
    """An attempt failed and another follows after ``delay`` seconds. ``scope``: ``request`` (a model
    endpoint's retry) or ``stage`` (the stage's ``retry``); ``cause``: ``timeout``, ``connect``, a status
    code, or an exception's type."""

    attempt: int
    delay: float
    cause: str
    error: str
    scope: str


@dataclass(frozen=True, slots=True)
class Token(Event):
    """Text an agent streamed, in order per node; ``at`` is when its first part arrived. One event may hold
    several deltas (see the module's docstring)."""

    agent: str
    text: str


@dataclass(frozen=True, slots=True)
class StreamRestarted(Event):
    """The text this node streamed so far is void: a retried request answered differently. The whole new
    answer follows in :class:`Token` events. (A retry that repeats the same text restarts nothing: what was
    already streamed is not sent again.)"""

    agent: str


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """The last event of every run, ok, failed or interrupted: its :class:`~runner.result.Result`."""

    result: Result
