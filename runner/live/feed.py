"""Recorded events and streamed text joined into one ordered sequence for one consumer (see :mod:`runner.live`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.calls import ChatResult
from runner.events import Event as RawEvent
from runner.events import Recorder
from runner.live.events import (
    Event,
    NodeCancelled,
    NodeFailed,
    NodeFinished,
    NodeQueued,
    NodeSkipped,
    NodeStarted,
    Retry,
    StreamRestarted,
    Token,
)

if TYPE_CHECKING:
    pass


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
