"""A run in progress and its events as they happen: :class:`RunStream`."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from runner.events import Recorder
from runner.live.events import (
    Event,
    RunFinished,
)
from runner.live.feed import Feed

if TYPE_CHECKING:
    from runner.engine.execute import TokenSinkFactory
    from runner.engine.session import RunOutcome, Session
    from runner.result import Result


# -- the stream -------------------------------------------------------------------------------------------------


class _Job(Protocol):
    """A workflow ready to run (``runner.api``): makes the run's session and turns its outcome into a Result."""

    def session(self, *, sink: TokenSinkFactory | None, recorder: Recorder) -> Session: ...

    def result(self, outcome: RunOutcome) -> Result: ...

    def close(self) -> None:
        """Let go of what the run held open beyond its session (its checkpoint); safe to call again."""


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
        try:
            await self._end()
        finally:
            self._job.close()  # the run's checkpoint written and its folder's lock let go of

    async def _end(self) -> None:
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
