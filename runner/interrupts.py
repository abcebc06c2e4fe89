"""How the ``runner`` program answers SIGINT and SIGTERM, at any moment of its life (issue 21).

Exit codes: 130 for SIGINT (Ctrl-C), 143 for SIGTERM: 128 plus the signal's number, as a shell reports a
process a signal stopped, so a supervisor tells "the user pressed Ctrl-C" from "I asked it to stop".

What a signal does depends on the phase, each time what is safe then:

1. **Before the run** (importing, parsing the command line, loading and compiling the workflow): the handler
   raises :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated` (SIGTERM, a kind of KeyboardInterrupt),
   and the CLI exits with the code and one line, no traceback. Nothing has been spent and nothing is written.
   It raises only where the CLI catches it (between :func:`arm` and :func:`disarm`) and never into an import
   in progress: an exception raised there can surface in a callback that Python only reports ("Exception
   ignored in ...", a traceback), or inside a C extension's initialisation that makes the interpreter kill
   itself with SIGINT at exit, whatever the program caught. Such a signal is remembered and raised at the
   next checkpoint: :func:`arm`, :func:`begin_run` (the run does not start), the end of ``main``.
2. **The run** (from :func:`begin_run`): the handler does not raise. It cancels the run's main task, which the
   CLI registers with :func:`attach` (a library run, ``runner.arun``, registers nothing); the run unwinds and
   leaves a partial report. A signal that comes before the task is registered is remembered and cancels it as
   soon as it is. Once the run has been cancelled, a further signal raises, as a second Ctrl-C does in
   :mod:`asyncio`: for a run stuck in code that ignores cancellation (the session still writes the partial
   report).
3. **After the run** (from :func:`end_run`: the report, the summary): the signal is only remembered; the
   files are finished and the program exits with the signal's code (:func:`exit_code`).
4. **The exit** (:func:`uninstall` with ``final``): the output is flushed; a signal ends the process at once
   with its code.

The handlers are installed by the program only (:func:`install`: from ``runner.cli.main`` and, for
``python -m runner``, as the package is imported, so that a signal while the rest is imported is handled too);
importing runner as a library changes no handler. Everything here is light to import for that reason.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # asyncio and typing are imported by the run, not on the way to installing the handlers
    import asyncio
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

__all__ = [
    "Terminated",
    "arm",
    "attach",
    "begin_run",
    "describe",
    "disarm",
    "end_run",
    "exit_code",
    "install",
    "received",
    "started_as_program",
    "uninstall",
]

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C everywhere, told apart by the exit code (143)."""


class _State:
    """What the handlers know: the phase, the first signal received, the run's task."""

    def __init__(self) -> None:
        self.installed = False
        self.previous: dict[int, Any] = {}
        self.phase = "before"  # before | run | after | exit
        self.armed = False  # before the run: raise (the CLI catches it) rather than remember
        self.signal: int | None = None
        self.target: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self.cancelled = False
        self.told = False  # an exit code was given for the signal received


_state = _State()


def _interruption(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame: FrameType | None) -> None:
    state = _state
    if state.signal is None:
        state.signal = signum
    phase = state.phase
    if phase == "before":
        if state.armed and not _importing(frame):
            raise _interruption(signum)
        return  # raised at the next checkpoint, where it can be caught
    if phase == "after":
        return
    if phase == "exit":
        os._exit(128 + state.signal)
    if state.cancelled:
        raise _interruption(signum)  # a further signal: the run did not stop for the first one
    target = state.target
    if target is None:
        return  # the run's task is not there yet: attach() cancels it
    state.cancelled = True
    loop, task = target
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop has just closed: the run is over, the signal is remembered
        pass


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import (importlib's frames are in its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def install() -> bool:
    """Install the program's SIGINT and SIGTERM handlers (phase 1); False where signals cannot be handled
    here (not the main thread). Installing twice is harmless."""
    state = _state
    if state.installed:
        return True
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            state.previous[number] = signal.signal(number, _handler)
    except ValueError:  # not the main thread of the main interpreter
        for installed, previous in state.previous.items():
            signal.signal(installed, previous)
        state.previous.clear()
        return False
    state.installed = True
    return True


def uninstall(*, final: bool = False) -> None:
    """Put back the handlers found by :func:`install` and forget what was received (for a caller that runs
    ``main`` in-process). ``final``: the program is about to exit and has flushed its output; instead of
    putting them back, a signal now ends the process at once with its exit code."""
    global _state
    if not _state.installed:
        return
    if final:
        _state.phase = "exit"
        if _state.signal is not None and not _state.told:  # it came after the exit code was decided
            os._exit(128 + _state.signal)
        return
    for number, previous in _state.previous.items():
        signal.signal(number, previous)
    _state = _State()


def arm() -> None:
    """Before the run, a signal now raises (the caller catches ``KeyboardInterrupt``); one that came before
    is raised here."""
    state = _state
    if not state.installed or state.phase != "before":
        return
    state.armed = True
    if state.signal is not None:
        raise _interruption(state.signal)


def disarm() -> None:
    """Before the run, a signal is now remembered until the next :func:`arm`."""
    _state.armed = False


def begin_run() -> None:
    """The run starts (phase 2): from here a signal cancels the run instead of raising. A signal that came
    before and is still to be raised is raised here instead: the run does not start."""
    state = _state
    if not state.installed:
        return
    if state.phase == "before" and state.signal is not None:
        raise _interruption(state.signal)
    state.phase = "run"


def end_run() -> None:
    """The run is over (phase 3): a signal is remembered while the report is written."""
    if _state.installed:
        _state.phase = "after"
        _state.target = None


def attach(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Callable[[], None] | None:
    """Register the run's main task, which a signal then cancels; returns the function that unregisters it,
    or None when the program's handlers are not in charge (a library caller keeps its own)."""
    state = _state
    if not state.installed or state.phase != "run":
        return None
    state.target = (loop, task)
    if state.signal is not None and not state.cancelled:  # it came while the run was starting
        state.cancelled = True
        task.cancel()  # the caller is the task: it stops at its next await

    def detach() -> None:
        if state.target is not None and state.target[1] is task:
            state.target = None

    return detach


def received() -> int | None:
    """The first signal received since :func:`install` (``signal.SIGINT`` or ``signal.SIGTERM``), if any."""
    return _state.signal


def exit_code(exc: BaseException | None = None) -> int:
    """The exit code of an interrupted program: 143 after SIGTERM, else 130 (Ctrl-C)."""
    _state.told = True
    if isinstance(exc, Terminated) or _state.signal == signal.SIGTERM:
        return EXIT_SIGTERM
    return EXIT_SIGINT


def describe() -> str:
    """``interrupted``, or ``terminated`` after SIGTERM: for the program's last line."""
    return "terminated" if _state.signal == signal.SIGTERM else "interrupted"


def started_as_program() -> bool:
    """Whether this process is ``python -m runner`` (or a submodule of it), still importing the package:
    ``sys.argv[0]`` is ``-m`` until the module is found, and ``sys.orig_argv`` names it."""
    if sys.argv[:1] != ["-m"]:
        return False
    argv: list[str] = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(argv):
        if arg == "-m":
            return i + 1 < len(argv) and argv[i + 1].split(".")[0] == "runner"
        if arg.startswith("-m"):
            return arg[2:].split(".")[0] == "runner"
    return False
