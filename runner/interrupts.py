"""How the ``runner`` program answers SIGINT and SIGTERM, at any moment of its life (issue 21).

Exit codes: 130 for SIGINT (Ctrl-C), 143 for SIGTERM: 128 plus the signal's number, as a shell reports a
process a signal stopped, so a supervisor tells "the user pressed Ctrl-C" from "I asked it to stop".

What a signal does depends on the phase, each time what is safe then:

1. **Before the run** (parsing the command line, loading and compiling the workflow): the handler raises
   :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated` (SIGTERM, a kind of KeyboardInterrupt), and the
   CLI exits with the code and one line, no traceback. Nothing has been spent and nothing is written.
2. **The run** (from :func:`begin_run`): the handler never raises into the program. It cancels the run's main
   task, which the session registers with :func:`attach`; the run unwinds and leaves a partial report. A
   signal that comes before the task is registered is remembered and cancels it as soon as it is; one that
   comes after the task has ended is only remembered. A second signal while the task is still unwinding
   raises, as a second Ctrl-C does in :mod:`asyncio`, for a run stuck in code that ignores cancellation.
3. **After the run** (the report, the summary): the signal is remembered, the files are finished, and the
   program exits with the signal's code (:func:`exit_code`).

The handlers are installed by the program only (:func:`install`, from ``runner.cli.main`` and, for
``python -m runner``, as the package is imported): importing runner as a library changes no handler.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio itself is imported only by the run, not on the way to --help
    import asyncio

__all__ = ["Terminated", "attach", "begin_run", "exit_code", "install", "received", "uninstall"]

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C everywhere, told apart by the exit code (143)."""


class _State:
    """What the handlers know: the phase (``mode``), the first signal, the run's task."""

    def __init__(self) -> None:
        self.installed = False
        self.previous: dict[int, Any] = {}
        self.mode = "raise"  # raise | run | exit
        self.signal: int | None = None  # the first signal received
        self.target: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self.cancelled = False


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    state = _state
    if state.signal is None:
        state.signal = signum
    if state.mode == "exit":
        # The program has finished and flushed its output; only the exit code is left to give.
        os._exit(128 + (state.signal or signum))
    if state.mode == "raise":
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    target = state.target
    if target is None:
        return  # before the run's task exists (it is cancelled when attached) or after it has ended
    if not state.cancelled:
        state.cancelled = True
        loop, task = target
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop has just closed: the run is over, the signal is remembered
            pass
        return
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install() -> bool:
    """Install the program's SIGINT and SIGTERM handlers (phase 1); False where signals cannot be handled
    here (not the main thread). Installing twice is harmless."""
    state = _state
    if state.installed:
        return True
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            state.previous[sig] = signal.signal(sig, _handler)
    except ValueError:  # not the main thread of the main interpreter
        for number, previous in state.previous.items():
            signal.signal(number, previous)
        state.previous.clear()
        return False
    state.installed = True
    return True


def uninstall(*, final: bool = False) -> None:
    """Put back the handlers found by :func:`install`, and forget what was received (for a caller that runs
    ``main`` in-process). ``final``: the program is about to exit and has flushed its output; instead of
    putting them back, a signal now ends the process at once with its exit code."""
    global _state
    if not _state.installed:
        return
    if final:
        _state.mode = "exit"
        return
    for sig, previous in _state.previous.items():
        signal.signal(sig, previous)
    _state = _State()


def begin_run() -> None:
    """The run starts (phase 2): from here a signal cancels the run instead of raising."""
    if _state.installed:
        _state.mode = "run"


def attach(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Callable[[], None] | None:
    """Register the run's main task, which a signal then cancels; returns the function that unregisters it,
    or None when the program's handlers are not installed (a library caller keeps its own)."""
    state = _state
    if not state.installed or state.mode != "run":
        return None
    state.target = (loop, task)
    if state.signal is not None and not state.cancelled:  # it came while the run was starting
        state.cancelled = True
        loop.call_soon(task.cancel)

    def detach() -> None:
        if state.target is not None and state.target[1] is task:
            state.target = None

    return detach


def received() -> int | None:
    """The first signal received since :func:`install` (``signal.SIGINT`` or ``signal.SIGTERM``), if any."""
    return _state.signal


def exit_code(exc: BaseException | None = None) -> int:
    """The exit code for an interrupted program: 143 after SIGTERM, else 130 (Ctrl-C, or ``exc``)."""
    if isinstance(exc, Terminated) or _state.signal == signal.SIGTERM:
        return EXIT_SIGTERM
    return EXIT_SIGINT


def describe() -> str:
    """``interrupted`` or ``terminated`` (SIGTERM), for the program's last line."""
    return "terminated" if _state.signal == signal.SIGTERM else "interrupted"


def started_as_program() -> bool:
    """Whether this process is ``python -m runner`` still importing the package (``sys.argv[0]`` is ``-m``
    until the module is found): the handlers are then installed before anything else is imported."""
    argv: list[str] = list(getattr(sys, "orig_argv", []))
    if sys.argv[:1] != ["-m"]:
        return False
    for i, arg in enumerate(argv):
        if arg == "-m":
            return i + 1 < len(argv) and argv[i + 1].split(".")[0] == "runner"
        if arg.startswith("-m"):
            return arg[2:].split(".")[0] == "runner"
    return False
