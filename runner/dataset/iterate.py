"""What ``runner.each`` returns: the rows' results, to iterate with ``async for`` inside a running loop or with
``for`` in a script (then on a loop of its own, as ``runner.run`` does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

from runner.dataset.batch import RowResult
from runner.engine import loop as loops


class RowResults:
    """The results of a batch as its rows finish. ``async for row in results`` runs the batch on the running
    loop; ``for row in results`` runs it on a loop of its own (uvloop where installed) that advances while the
    caller waits for the next row, so a script needs no ``asyncio``. Either way it runs once. Leaving a ``for``
    early closes the batch at once (its rows in flight are cancelled); after ``async for`` use ``aclose()``, or
    ``contextlib.aclosing``, to do the same without waiting for the garbage collector. Ctrl-C during ``for``
    cancels the batch and raises ``KeyboardInterrupt``, as ``asyncio.run`` does."""

    def __init__(self, start: Callable[[], AsyncGenerator[RowResult, None]]) -> None:
        self._start = start
        self._running: AsyncGenerator[RowResult, None] | None = None

    def _begin(self) -> AsyncGenerator[RowResult, None]:
        if self._running is not None:
            raise RuntimeError("the results of runner.each() are iterated once; call runner.each() again")
        self._running = self._start()
        return self._running

    def __aiter__(self) -> AsyncGenerator[RowResult, None]:
        return self._begin()

    async def aclose(self) -> None:
        """Stop the batch: cancel its rows in flight and close what it opened."""
        if self._running is not None:
            await self._running.aclose()

    def __iter__(self) -> Iterator[RowResult]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("inside a running event loop, iterate runner.each() with `async for`")
        return self._iterate(self._begin())

    @staticmethod
    def _iterate(rows: AsyncGenerator[RowResult, None]) -> Iterator[RowResult]:
        factory, _ = loops.loop_factory(quiet=True)
        with asyncio.Runner(loop_factory=factory) as runner:
            try:
                while True:
                    try:
                        row: Any = runner.run(rows.__anext__())
                    except StopAsyncIteration:
                        return
                    yield row
            finally:
                runner.run(rows.aclose())  # a `break`: the rows in flight are cancelled before the loop closes
