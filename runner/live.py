"""A run's events as they happen, for a program: typed events and :class:`RunStream` (``runner.stream``).

The engine records events by appending tuples to its :class:`~runner.events.Recorder` list and hands streamed
text to a per-node callback; neither ever waits for a reader. A stream joins the two into one ordered sequence
for one consumer, on the run's own loop:

* **Recorded events** are read from the recorder's list with a cursor (the list the report is built from, kept
  anyway), so a consumer that falls behind costs no memory of its own. While a stream is open the list is one
  that wakes a waiting consumer when an event is appended: about 0.15 µs more per event than a plain list's
  append (one method call and one attribute test); a run nobody streams records exactly as before.
* **Streamed text** is queued with the position in that list at which it arrived, so each token comes after
  the events recorded before it (a node's text after its :class:`NodeStarted`, before its
  :class:`NodeFinished`). Text a consumer has not taken yet joins the node's pending :class:`Token` when
  nothing came in between. Past ``token_buffer`` pending tokens (a consumer that cannot keep up), a node's new
  text joins its pending token whatever came in between: nothing is dropped and nothing blocks the run; the
  queue holds at most ``token_buffer`` tokens plus two per streaming node, and only the interleaving of
  different nodes' text with other events becomes coarser. Backpressure was the other choice; it would make
  the engine's hot path wait for a reader, and a slow consumer would slow the run it watches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from runner.calls import ChatResult, Usage
from runner.events import Event as RawEvent
from runner.events import Recorder

if TYPE_CHECKING:
    from runner.engine.execute import TokenSinkFactory
    from runner.engine.session import RunOutcome, Session
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
    "RunStream",
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


# -- joining recorded events and streamed text ----------------------------------------------------------------


class _Pending:
    """Text of one node waiting for the consumer (``parts`` None: a restart), queued at ``position`` in the
    recorder's list."""

    __slots__ = ("position", "node", "agent", "at", "parts")

    def __init__(self, position: int, node: str, agent: str, at: float, parts: list[str] | None) -> None:
        self.position = position
        self.node = node
        self.agent = agent
        self.at = at
        self.parts = parts


class _Announcing(list[RawEvent]):
    """The recorder's event list while a stream is open: appending wakes the consumer if it waits."""

    __slots__ = ("_feed",)

    def __init__(self, feed: Feed) -> None:
        super().__init__()
        self._feed = feed

    def append(self, event: RawEvent) -> None:
        list.append(self, event)
        if self._feed.waiter is not None:
            self._feed.wake()


class _NodeText:
    """The engine's token callback for one node. It has ``restart`` and no ``reset``: a retried stream's
    repeated text is withheld by the provider, and only an answer that departs from what was shown restarts
    (see ``runner.providers.openai._TokenGate``)."""

    __slots__ = ("_feed", "_node", "_agent")

    def __init__(self, feed: Feed, node: str, agent: str) -> None:
        self._feed = feed
        self._node = node
        self._agent = agent

    def __call__(self, text: str) -> None:
        if text:  # "" only marks the end of the node's stream: NodeFinished says that
            self._feed.text(self._node, self._agent, text)

    def restart(self) -> None:
        self._feed.restart(self._node, self._agent)


class Feed:
    """The ordered, typed events of one run for one consumer (see the module's docstring)."""

    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop, token_buffer: int) -> None:
        self.recorder = recorder
        self.events = _Announcing(self)
        recorder.events = self.events  # before the run records anything
        self.t0 = 0.0  # the run's start (perf_counter), set when it starts
        self.waiter: asyncio.Future[None] | None = None
        self.ended = False
        self._loop = loop
        self._thread = threading.get_ident()
        self._limit = token_buffer
        self._pending: deque[_Pending] = deque()
        self._last: dict[str, _Pending] = {}  # node -> its newest pending entry
        self._cursor = 0
        self._started: dict[str, tuple[float, str]] = {}  # node -> (perf_counter, kind)

    def for_node(self, node: str, agent: str) -> Callable[[str], None]:
        """The engine's token sink factory."""
        return _NodeText(self, node, agent)

    # producer side: the engine, on the loop

    def text(self, node: str, agent: str, text: str) -> None:
        pending = self._pending
        last = self._last.get(node)
        position = len(self.events)
        if (
            last is not None
            and last.parts is not None
            and ((last is pending[-1] and last.position == position) or len(pending) >= self._limit)
        ):
            last.parts.append(text)
        else:
            entry = _Pending(position, node, agent, time.perf_counter(), [text])
            pending.append(entry)
            self._last[node] = entry
        if self.waiter is not None:
            self.wake()

    def restart(self, node: str, agent: str) -> None:
        entry = _Pending(len(self.events), node, agent, time.perf_counter(), None)
        self._pending.append(entry)
        self._last[node] = entry  # later text follows the restart, never joins text before it
        if self.waiter is not None:
            self.wake()

    def end(self) -> None:
        """The run's task is done: nothing more will come."""
        self.ended = True
        if self.waiter is not None:
            self.wake()

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            return
        if threading.get_ident() == self._thread:
            if not waiter.done():
                waiter.set_result(None)
        else:  # an event recorded from a worker thread
            self._loop.call_soon_threadsafe(_resolve, waiter)

    # consumer side

    def ready(self) -> bool:
        return self._cursor < len(self.events) or bool(self._pending) or self.ended

    async def wait(self) -> None:
        """Until there is something to read or the run ended."""
        waiter = self._loop.create_future()
        self.waiter = waiter
        if self.ready():  # something came between the caller's look and now (possibly from another thread)
            self.waiter = None
            return
        try:
            await waiter
        finally:
            self.waiter = None

    def next(self) -> Event | None:
        """The next event in the order things happened, or None when there is none yet."""
        events = self.events
        pending = self._pending
        while True:
            limit = pending[0].position if pending else len(events)
            while self._cursor < limit:
                raw = events[self._cursor]
                self._cursor += 1
                typed = self._typed(raw)
                if typed is not None:
                    return typed
            if not pending:
                return None
            entry = pending.popleft()
            if self._last.get(entry.node) is entry:
                del self._last[entry.node]
            at = entry.at - self.t0
            if entry.parts is None:
                return StreamRestarted(at, entry.node, entry.agent)
            return Token(at, entry.node, entry.agent, "".join(entry.parts))

    def _typed(self, raw: RawEvent) -> Event | None:
        t, kind, node, data = raw
        at = t - self.t0
        if kind == "started":
            info = data or {}
            self._started[node] = (t, str(info.get("kind", "")))
            return NodeStarted(at, node, str(info.get("kind", "")), info.get("agent"), info.get("model"), _name(info))
        if kind in ("finished", "failed", "cancelled"):
            start, node_kind = self._started.get(node, (None, ""))
            elapsed = None if start is None else t - start
            if kind == "finished":
                if isinstance(data, ChatResult):
                    first = None if data.first_token_at is None else data.first_token_at - self.t0
                    return NodeFinished(
                        at, node, node_kind, elapsed or 0.0, data.content, data.usage, first, data.attempts
                    )
                return NodeFinished(at, node, node_kind, elapsed or 0.0)
            info = data or {}
            if kind == "failed":
                return NodeFailed(at, node, node_kind or str(info.get("kind", "")), elapsed, str(info.get("error", "")))
            return NodeCancelled(at, node, node_kind, elapsed, str(info.get("error", "")))
        if kind == "queued":
            return NodeQueued(at, node)
        if kind == "skipped":
            return NodeSkipped(at, node, str((data or {}).get("reason", "")))
        if kind == "retry":
            info = data or {}
            return Retry(
                at,
                node,
                int(info.get("attempt", 0)),
                float(info.get("delay", 0.0)),
                str(info.get("cause", "")),
                str(info.get("error", "")),
                str(info.get("scope", "request")),
            )
        return None  # waits, tool ends, cache and memory figures: in the report


def _name(info: Any) -> str | None:
    name = info.get("tool") or info.get("function")
    return None if name is None else str(name)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# -- the stream -------------------------------------------------------------------------------------------------


class _Job(Protocol):
    """A workflow ready to run (``runner.api``): makes the run's session and turns its outcome into a Result."""

    def session(self, *, sink: TokenSinkFactory | None, recorder: Recorder) -> Session: ...

    def result(self, outcome: RunOutcome) -> Result: ...


class RunStream:
    """A run in progress and its events as they happen (``runner.stream(...)``)::

        async with runner.stream(workflow, inputs) as run:
            async for event in run:
                ...
        run.result

    Entering starts the run as a task on the running loop; iterating gives its events in the order they
    happened (see :mod:`runner.live` for how streamed text is buffered), the last one :class:`RunFinished`.
    Leaving the block ends the run's lifetime with it, as a task group does: a run still going (the loop
    broke early, the body raised, or the task was cancelled) is cancelled and waited for, so its connections
    are closed and its partial report is there; :attr:`result` then has status ``interrupted``. An error in
    the block or a cancellation of the task propagates as usual.
    """

    def __init__(self, job: _Job, *, token_buffer: int = 1000) -> None:
        if token_buffer < 1:
            raise ValueError(f"token_buffer must be at least 1, got {token_buffer}")
        self._job = job
        self._token_buffer = token_buffer
        self._feed: Feed | None = None
        self._session: Session | None = None
        self._task: asyncio.Task[RunOutcome] | None = None
        self._result: Result | None = None
        self._finished_sent = False

    async def __aenter__(self) -> RunStream:
        if self._task is not None:
            raise RuntimeError("a RunStream runs once: call runner.stream(...) again for another run")
        loop = asyncio.get_running_loop()
        recorder = Recorder()
        feed = self._feed = Feed(recorder, loop, self._token_buffer)
        session = self._session = self._job.session(sink=feed.for_node, recorder=recorder)
        feed.t0 = session.info.t0  # the run starts now, on this loop
        self._task = loop.create_task(session.run())
        self._task.add_done_callback(lambda _: feed.end())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task = self._task
        if task is None:
            return
        if not task.done():
            task.cancel()
            # The run winds down (connections closed, its outcome recorded) before the block is left; if this
            # task is cancelled again meanwhile, that propagates and the run finishes winding down on its own.
            await asyncio.wait({task})
        assert self._session is not None
        if self._session.outcome is None:  # cancelled before its first step: nothing ran
            self._session.end("interrupted", None, asyncio.CancelledError())
        if not task.cancelled():
            task.exception()  # retrieved: a session ends with an outcome, and asyncio must not report it

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Event:
        feed = self._feed
        if feed is None:
            raise RuntimeError("iterate a stream inside `async with runner.stream(...) as run:`")
        while True:
            event = feed.next()
            if event is not None:
                return event
            if feed.ended:
                final = self.finished()
                if final is None:
                    raise StopAsyncIteration
                return final
            await feed.wait()

    async def wait(self) -> Result:
        """Until the run ends, without taking its events (they stay to be iterated, text merged within
        ``token_buffer``); returns its result. Cancelling the wait leaves the run to the block."""
        if self._task is None:
            raise RuntimeError("wait for a stream inside `async with runner.stream(...) as run:`")
        await asyncio.wait({self._task})
        return self.result

    def remaining(self) -> list[Event]:
        """Once the run has ended, the events not taken yet, :class:`RunFinished` last (empty before the end):
        how ``arun``'s handler still receives them when its task is cancelled mid-iteration."""
        feed = self._feed
        if feed is None or not self.done:
            return []
        left: list[Event] = []
        while (event := feed.next()) is not None:
            left.append(event)
        final = self.finished()
        if final is not None:
            left.append(final)
        return left

    def finished(self) -> RunFinished | None:
        """The :class:`RunFinished` event, the first time it is asked for once the run ended (None after)."""
        if self._finished_sent or self._session is None or self._session.outcome is None:
            return None
        self._finished_sent = True
        result = self.result
        return RunFinished(self._session.outcome.end - self._session.info.t0, "", result)

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self._session is not None and self._session.outcome is not None

    @property
    def result(self) -> Result:
        """The run's :class:`~runner.result.Result`, once it has ended (also when it was cancelled)."""
        if self._session is None or self._session.outcome is None:
            raise RuntimeError("the run has not ended: read the result after the `async with` block")
        if self._result is None:
            self._result = self._job.result(self._session.outcome)
        return self._result
