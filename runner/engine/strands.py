"""Fan-out branches as strands: coroutines driven the way ``asyncio.Task`` drives them, without a Task each.

On Python 3.11 an ``asyncio.Task`` costs about 1.5 µs to create (its registration in a ``WeakSet`` is
Python code), its first step waits a loop iteration, and a ``TaskGroup`` adds a done-callback hop per task:
at 10,000 branches that is a large share of the engine's work (``bench/engine_overhead.py``). A strand
starts its coroutine at once (as Python 3.12's eager tasks do), wakes on the futures it awaits like a Task,
and reports to its :class:`StrandGroup` directly.

A strand is what ``asyncio.current_task()`` returns inside the branch, so the code that asks for the current
task works unchanged: ``asyncio.timeout`` and aiohttp's timeouts cancel it, a nested ``TaskGroup`` takes it
as its parent. It answers that part of the Task protocol (``cancel``, ``cancelling``, ``uncancel``,
``done``, ``cancelled``, ``result``, ``exception``, done callbacks, names). Each strand runs in a
``contextvars.Context`` of its own, as a Task does. Strands are not listed by ``asyncio.all_tasks()``: the
group that owns them lives in a Task and cancels them when that Task is cancelled.

Groups start their strands in chunks from loop callbacks, so replies that arrive while a wide fan-out is
still starting are handled in between rather than after the last branch has started.
"""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import CancelledError
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

# asyncio's own bookkeeping of the current task (C functions): what asyncio.current_task() reads.
_enter_task: Callable[[asyncio.AbstractEventLoop, Any], None] = asyncio.tasks._enter_task
_leave_task: Callable[[asyncio.AbstractEventLoop, Any], None] = asyncio.tasks._leave_task

PENDING, FINISHED, FAILED, CANCELLED = 0, 1, 2, 3

CHUNK = 256
"""Strands a group starts per loop callback: small enough that timers and replies are served in between,
large enough that the callbacks cost nothing measurable."""


class Strand:
    """Drives one coroutine; the ``asyncio.current_task()`` of the code inside it."""

    __slots__ = (
        "_coro",
        "_loop",
        "_group",
        "_index",
        "_context",
        "_waiter",
        "_must_cancel",
        "_cancel_message",
        "_cancels",
        "_state",
        "_result",
        "_exception",
        "_callbacks",
        "__weakref__",  # as a Task: code may keep weak references to the current task
    )

    # No __init__: StrandGroup._spawn makes strands with object.__new__ and sets their fields inline, which
    # saves a Python call per branch. It sets every field but _cancel_message (read only once _must_cancel is
    # set with it) and _result (set when the strand ends).
    _coro: Coroutine[Any, Any, Any]
    _loop: asyncio.AbstractEventLoop
    _group: StrandGroup
    _index: int
    _context: contextvars.Context
    _waiter: asyncio.Future[Any] | None
    _must_cancel: bool
    _cancel_message: str | None
    _cancels: int
    _state: int
    _result: Any
    _exception: BaseException | None
    _callbacks: list[tuple[Callable[[Any], object], contextvars.Context]] | None

    # -- the Task protocol, as code running inside the strand uses it -------------------------------------

    def cancel(self, msg: str | None = None) -> bool:
        if self._state != PENDING:
            return False
        self._cancels += 1
        waiter = self._waiter
        if waiter is not None and waiter.cancel(msg=msg):
            return True  # the waiter's callback throws CancelledError into the coroutine
        self._must_cancel = True  # thrown in at the next step
        self._cancel_message = msg
        return True

    def cancelling(self) -> int:
        return self._cancels

    def uncancel(self) -> int:
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels

    def done(self) -> bool:
        return self._state != PENDING

    def cancelled(self) -> bool:
        return self._state == CANCELLED

    def result(self) -> Any:
        if self._state == PENDING:
            raise asyncio.InvalidStateError("Result is not set.")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        if self._state == PENDING:
            raise asyncio.InvalidStateError("Exception is not set.")
        if self._state == CANCELLED:
            assert self._exception is not None
            raise self._exception
        return self._exception

    def add_done_callback(self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None) -> None:
        ctx = context if context is not None else contextvars.copy_context()
        if self._state != PENDING:
            self._loop.call_soon(fn, self, context=ctx)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append((fn, ctx))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if not self._callbacks:
            return 0
        kept = [(f, c) for f, c in self._callbacks if f != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def get_coro(self) -> Coroutine[Any, Any, Any]:
        return self._coro

    def get_name(self) -> str:
        return f"{self._group.name}[{self._index}]"

    def __repr__(self) -> str:
        state = ("pending", "finished", "failed", "cancelled")[self._state]
        return f"<Strand {self.get_name()} {state}>"

    # -- driving the coroutine ------------------------------------------------------------------------------

    def _step(self, arg: BaseException | asyncio.Future[Any] | None) -> None:
        """Run the coroutine to its next suspension. ``arg``: None (start, or after a bare yield), an exception
        to throw in, or the future it waited on (the strand is that future's done callback)."""
        # A future's outcome is not read here: the coroutine's await reads it (and raises its exception) when
        # it resumes, which is what a Task's throwing it in amounts to. The done waiter stays in _waiter until
        # the next one: cancel() on a done future does nothing, and falls back to _must_cancel.
        exc = arg if isinstance(arg, BaseException) else None
        if self._must_cancel:
            if not isinstance(exc, CancelledError):
                exc = CancelledError(self._cancel_message) if self._cancel_message is not None else CancelledError()
            self._must_cancel = False
        loop = self._loop
        _enter_task(loop, self)
        try:
            yielded = self._coro.send(None) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:
            _leave_task(loop, self)
            if self._must_cancel:  # cancelled during its last step: it counts as cancelled, as a Task does
                self._must_cancel = False
                self._finish(CANCELLED, None, CancelledError())
            else:  # _finish and the group's _ended, inlined: the hot path
                self._state = FINISHED
                self._result = value = stop.value
                if self._callbacks:
                    self._run_callbacks()
                group = self._group
                group._running -= 1
                index = self._index
                group._strands[index] = None  # let the finished coroutine go
                group._results[index] = value
                if group._running == 0 and (group._aborting or group._next >= group._n):
                    group._settle()
            return
        except CancelledError as cancelled:
            _leave_task(loop, self)
            self._finish(CANCELLED, None, cancelled)
            return
        except (KeyboardInterrupt, SystemExit) as fatal:
            _leave_task(loop, self)
            self._finish(FAILED, None, fatal)
            raise
        except BaseException as error:  # noqa: BLE001 - the branch's failure, reported to the group
            _leave_task(loop, self)
            self._finish(FAILED, None, error)
            return
        _leave_task(loop, self)
        blocking = getattr(yielded, "_asyncio_future_blocking", None)
        if blocking:  # an awaited future
            if yielded.get_loop() is not loop:
                problem = RuntimeError(f"{self!r} awaited a future attached to a different loop: {yielded!r}")
                loop.call_soon(self._step, problem, context=self._context)
                return
            yielded._asyncio_future_blocking = False
            yielded.add_done_callback(self._step, context=self._context)
            self._waiter = yielded
            if self._must_cancel and yielded.cancel(msg=self._cancel_message):
                self._must_cancel = False
        elif yielded is None:  # a bare yield: asyncio.sleep(0)
            loop.call_soon(self._step, None, context=self._context)
        else:
            what = "yield was used instead of yield from" if blocking is not None else "a strand got a bad yield"
            loop.call_soon(self._step, RuntimeError(f"{what} in {self!r}: {yielded!r}"), context=self._context)

    def _finish(self, state: int, value: Any, exc: BaseException | None) -> None:
        self._state = state
        self._result = value
        self._exception = exc
        if self._callbacks:
            self._run_callbacks()
        self._group._ended(self, state, value, exc)

    def _run_callbacks(self) -> None:
        assert self._callbacks is not None
        for fn, ctx in self._callbacks:
            self._loop.call_soon(fn, self, context=ctx)
        self._callbacks = None


class StrandGroup:
    """Runs ``start(i)`` for ``i`` in ``range(n)`` as strands and gives their results in order.

    Like a TaskGroup: the first branch to fail cancels the others, and once all have ended its error is
    raised (the others' errors are dropped, as the engine reports the first one); if the awaiting task is
    cancelled, every strand is cancelled and awaited before ``CancelledError`` propagates. Branches that
    have not started when the group aborts never start.
    """

    __slots__ = (
        "loop",
        "name",
        "_n",
        "_start_fn",
        "_next",
        "_running",
        "_strands",
        "_results",
        "_error",
        "_aborting",
        "_waiter",
    )

    def __init__(self, name: str, n: int, start: Callable[[int], Coroutine[Any, Any, Any]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.name = name
        self._n = n
        self._start_fn = start
        self._next = 0
        self._running = 0
        self._strands: list[Strand | None] = []
        self._results: list[Any] = [None] * n
        self._error: BaseException | None = None
        self._aborting = False
        self._waiter: asyncio.Future[None] | None = None

    async def run(self) -> list[Any]:
        if self._n == 0:
            return []
        loop = self.loop
        self._waiter = loop.create_future()
        loop.call_soon(self._spawn)
        cancelled: CancelledError | None = None
        while True:
            try:
                await self._waiter
                break
            except CancelledError as exc:
                if cancelled is None:
                    cancelled = exc
                self._abort()
                if not self._waiter.cancelled():  # it had ended already; the cancellation came after
                    break
                self._waiter = loop.create_future()
                if self._finished():
                    break
        self._strands = []
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if cancelled is not None:
            raise cancelled
        return self._results

    def _spawn(self) -> None:
        if self._aborting:
            self._settle()
            return
        start, strands, loop = self._start_fn, self._strands, self.loop
        new_strand, copy_context = object.__new__, contextvars.copy_context
        first = self._next
        end = min(first + CHUNK, self._n)
        # The whole chunk counts as running from the start, so a strand that ends within its first step cannot
        # settle the group early; what did not start is taken off after the loop (strands holds one entry per
        # strand started, so its length is the next index). This keeps the loop free of group bookkeeping.
        self._running += end - first
        for i in range(first, end):
            if self._aborting:
                break
            try:
                coro = start(i)
            except Exception as exc:  # noqa: BLE001 - preparing the branch failed: the branch failed
                if self._error is None:
                    self._error = exc
                self._abort()
                break
            strand = new_strand(Strand)  # see Strand: its fields are set here
            strand._coro = coro
            strand._loop = loop
            strand._group = self
            strand._index = i
            strand._context = context = copy_context()
            strand._waiter = None
            strand._must_cancel = False
            strand._cancels = 0
            strand._state = PENDING
            strand._exception = None
            strand._callbacks = None
            strands.append(strand)
            context.run(strand._step, None)
        self._next = started = len(strands)
        self._running -= end - started
        if started < self._n and not self._aborting:
            self.loop.call_soon(self._spawn)
        else:
            self._settle()

    def _ended(self, strand: Strand, state: int, value: Any, exc: BaseException | None) -> None:
        self._running -= 1
        index = strand._index
        self._strands[index] = None  # let the finished coroutine go
        if state == FINISHED:
            self._results[index] = value
        elif not (state == CANCELLED and self._aborting):
            if self._error is None:
                assert exc is not None
                self._error = exc
            self._abort()
        if self._running == 0 and (self._aborting or self._next >= self._n):  # _settle, inlined: hot path
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _abort(self) -> None:
        if self._aborting:
            return
        self._aborting = True
        for strand in self._strands:
            if strand is not None and not strand.done():
                strand.cancel()

    def _finished(self) -> bool:
        return self._running == 0 and (self._aborting or self._next >= self._n)

    def _settle(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._finished():
            waiter.set_result(None)


async def run_strands(name: str, items: Sequence[Any], start: Callable[[int], Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run ``start(i)`` for every index of ``items`` as strands of one group; their results in order."""
    return await StrandGroup(name, len(items), start).run()
