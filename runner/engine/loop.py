"""The event loop: uvloop where it exists, the standard asyncio loop elsewhere (said once)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_warned = False


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory to use and its name for the report."""
    global _warned
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        if not _warned:
            _warned = True
            print("runner: uvloop is not available here; using the standard asyncio loop", file=sys.stderr)
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def run(main: Callable[[], Coroutine[Any, Any, T]], *, use_uvloop: bool = True) -> T:
    factory, _ = loop_factory() if use_uvloop else (None, "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
