"""Fan-out branches as standard asyncio tasks of one ``asyncio.TaskGroup``, at most ``limit`` at once.

Each branch is a real ``asyncio.Task``: libraries that look at the current task (anyio's cancel scopes read
its ``_fut_waiter``, httpcore and the OpenAI SDK run on anyio) work inside a branch exactly as anywhere else,
and each branch runs in its own copy of the context, as any task does. Where Python has eager tasks (3.12+)
and runner owns the loop, the loop's task factory starts them eagerly (:func:`runner.engine.loop.run`).

The group is the standard TaskGroup, so its semantics are the documented ones: the first branch to fail
cancels the others, an outer cancellation cancels and awaits every branch. On top of it the dispatcher
adds two things a fan-out needs: a bound (a branch's task is created only when a slot is free, so 10,000
queued branches are 10,000 integers, not 10,000 tasks waiting on a semaphore), and a stop: once a branch has
failed, nothing new is started. The first error is raised as itself, not inside an ``ExceptionGroup``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

Start = Callable[[int], Coroutine[Any, Any, Any]]


def first_error(exc: BaseException) -> BaseException:
    """A TaskGroup raises an ExceptionGroup; the user wants the first real error inside it (the first branch
    to fail: the group lists errors in the order the branches ended)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def run_all(n: int, start: Start, *, limit: int | None = None) -> list[Any]:
    """Run ``start(i)`` for ``i`` in ``range(n)``, each as a task, at most ``limit`` at once (all at once when
    None); return their results in index order.

    The first failure cancels the running branches and starts no new one; once all have ended, that failure
    is raised (the others' are dropped: the engine reports the first). ``start`` is called only when the
    branch starts, so a branch that never starts costs no coroutine.
    """
    if n == 0:
        return []
    try:
        if limit is None or limit >= n:
            return await _unbounded(n, start)
        return await _bounded(n, start, limit)
    except BaseExceptionGroup as group:
        error = first_error(group)
        raise error from error.__cause__


CHUNK = 256
"""Branches started per loop iteration by an unbounded fan-out: the loop serves replies and timers between
chunks, and after a failure no further chunk starts (the group's abort comes before the next chunk's first
steps). Eager tasks see a failure at once, so there nothing after it starts."""


async def _unbounded(n: int, start: Start) -> list[Any]:
    tasks: list[asyncio.Task[Any]] = []
    append = tasks.append
    sleep = asyncio.sleep
    async with asyncio.TaskGroup() as group:
        create = group.create_task
        for first in range(0, n, CHUNK):
            if first:
                await sleep(0)  # cancelled here if a branch of the last chunk failed: the group is aborting
            for i in range(first, min(first + CHUNK, n)):
                task = create(start(i))
                append(task)
                # An eager task (3.12+) may have failed within create_task: the group is shutting down, so
                # start nothing more (create_task would refuse anyway).
                if task.done() and not task.cancelled() and task.exception() is not None:
                    return []  # not reached: leaving the group raises the failure
    return [task.result() for task in tasks]


async def _bounded(n: int, start: Start, limit: int) -> list[Any]:
    loop = asyncio.get_running_loop()
    state = _Bounded(n, start, limit, loop.create_future())
    async with asyncio.TaskGroup() as group:
        state.group = group
        try:
            state.fill()
            if not state.all_started.done():  # the rest start from the done callbacks of those that end
                await state.all_started
        except asyncio.CancelledError:
            state.stopped = True  # the group is aborting (a branch failed, or we were cancelled)
            raise
    return [task.result() for task in state.tasks if task is not None]


class _Bounded:
    """The bounded dispatcher's state: the next index to start, how many run, and whether to stop."""

    __slots__ = ("n", "start", "limit", "tasks", "all_started", "group", "next", "running", "stopped")

    def __init__(self, n: int, start: Start, limit: int, all_started: asyncio.Future[None]) -> None:
        self.n = n
        self.start = start
        self.limit = limit
        self.tasks: list[asyncio.Task[Any] | None] = [None] * n
        self.all_started = all_started
        self.group: asyncio.TaskGroup | None = None
        self.next = 0
        self.running = 0
        self.stopped = False

    def fill(self) -> None:
        """Start branches while a slot is free. A loop, not recursion: eager tasks (3.12+) that end within
        ``create_task`` free their slot at once, and a chain of them must not grow the stack."""
        group = self.group
        assert group is not None
        while not self.stopped and self.next < self.n and self.running < self.limit:
            i = self.next
            self.next = i + 1
            try:
                coro = self.start(i)
            except Exception as exc:  # noqa: BLE001 - preparing the branch failed: the branch failed
                coro = _raise(exc)  # as a failed task, so the group aborts as for any failed branch
            task = group.create_task(coro)
            self.tasks[i] = task
            if task.done():  # ended eagerly
                if task.cancelled() or task.exception() is not None:
                    self.stopped = True
            else:
                self.running += 1
                task.add_done_callback(self._ended)
        if (self.stopped or self.next >= self.n) and not self.all_started.done():
            self.all_started.set_result(None)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self.running -= 1
        if task.cancelled() or task.exception() is not None:
            # The group cancels the others and raises; the dispatcher only has to start nothing more.
            self.stopped = True
            return
        self.fill()


async def _raise(exc: BaseException) -> None:
    raise exc
