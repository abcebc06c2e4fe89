"""The event loop: uvloop where it exists, the standard asyncio loop elsewhere (said once)."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_warned = False


def loop_factory(*, quiet: bool = False) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory to use and its name for the report. ``quiet``: a library call prints nothing, so only
    the CLI says that uvloop is missing."""
    global _warned
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        if not _warned and not quiet:
            _warned = True
            print("runner: uvloop is not available here; using the standard asyncio loop", file=sys.stderr)
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def eager_factory(loop: asyncio.AbstractEventLoop) -> Any:
    """``asyncio.eager_task_factory`` where Python has it (3.12+) and ``loop`` can use it, else None.

    Eager tasks run their first step inside ``create_task``, which saves a loop iteration per fan-out branch
    (and the whole scheduling for a branch that ends without waiting). It must be asyncio's own factory:
    anyio recognises it and keeps its own task groups' tasks lazy, which its cancel scopes need. uvloop on
    3.13 passes factories an ``eager_start`` keyword that CPython 3.13.0's factory does not take: no eager
    tasks there.
    """
    factory = getattr(asyncio, "eager_task_factory", None)
    if factory is None:
        return None
    if sys.version_info >= (3, 13) and type(loop).__module__.startswith("uvloop"):
        if "eager_start" not in inspect.signature(factory).parameters:
            return None
    return factory


def run(main: Callable[[], Coroutine[Any, Any, T]], *, use_uvloop: bool = True, quiet: bool = False) -> T:
    """Run ``main()`` on a new loop that runner owns (never on a loop a host program runs), as ``asyncio.run``
    does: the global loop policy is left alone (the loop comes from a factory), and while it runs Ctrl-C
    cancels ``main`` (``asyncio.Runner``'s own SIGINT handling, put back afterwards), then raises
    ``KeyboardInterrupt``."""
    factory, _ = loop_factory(quiet=quiet) if use_uvloop else (None, "asyncio")
    box: list[T] = []

    async def body() -> None:
        # The main task returns None and the value goes through ``box``: on Python 3.11 and 3.12, Runner.run
        # puts its SIGINT handler back with signal.signal(), which formats the old handler (a partial holding
        # the main task) with %r before it finds it is no enum, and a task's repr holds its result's: every
        # record of a 10,000-branch fan-out was repr'd twice after the run (0.5 s under a profiler).
        box.append(await main())

    with asyncio.Runner(loop_factory=factory) as runner:
        loop = runner.get_loop()
        factory = eager_factory(loop)
        if factory is not None:
            loop.set_task_factory(factory)
        runner.run(body())
    return box[0]
