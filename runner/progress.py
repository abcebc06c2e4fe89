"""Live progress on the terminal (stderr): nodes done/running/queued, tokens, retries, elapsed time.

A loop task tails the run's events with a cursor (:func:`runner.events.tail`) and redraws one line at most
``1 / interval`` times a second, so the hot path pays nothing for it. Streamed agent output on stdout and
this line share the terminal when both are one: :class:`ObservedStream` wraps stdout so the line is erased
before any output is written and redrawn only when the output stands at the start of a line. What reaches
stdout is never changed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from runner.calls import ChatResult
from runner.events import Event, Recorder, tail
from runner.termsize import columns as terminal_columns

CLEAR = "\r\x1b[2K"
_CONTAINERS = frozenset({"fanout", "branch", "loop", "iteration", "switch"})


class Progress:
    """Counts from the events and draws the progress line on ``out``."""

    def __init__(
        self,
        out: TextIO,
        *,
        interval: float = 0.1,
        width: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.out = out
        self.interval = interval
        self.width = width
        self.clock = clock
        self.t0 = clock()
        self.done = self.failed = self.retries = 0
        self.tokens_in = self.tokens_out = 0
        self._state: dict[str, str] = {}  # node -> "queued" | "running"
        self._counts = {"queued": 0, "running": 0}
        self._cursor = 0
        self.shown = False
        self.at_line_start = True  # where the other output on the same terminal stands
        self.frames = 0
        self.lock = threading.Lock()  # one writer at a time on the terminal: this line, output, log records
        self.paused = 0  # a prompt is on the terminal (a human gate): no line until it is answered

    @property
    def running(self) -> int:
        return self._counts["running"]

    @property
    def queued(self) -> int:
        return self._counts["queued"]

    def feed(self, events: Iterable[Event]) -> None:
        state, counts = self._state, self._counts
        for _, kind, node, data in events:
            if kind == "queued":
                was = state.get(node)
                if was is not None:
                    counts[was] -= 1
                state[node] = "queued"
                counts["queued"] += 1
            elif kind == "started":
                was = state.pop(node, None)
                if was is not None:
                    counts[was] -= 1
                if data and data.get("kind") in _CONTAINERS:
                    continue  # a fan-out is counted through its branches
                state[node] = "running"
                counts["running"] += 1
            elif kind in ("finished", "failed", "cancelled", "skipped"):
                was = state.pop(node, None)
                if was is None and kind != "skipped":
                    # a fan-out's end: branches queued under it that ran stages (whose own spans count) are
                    # no longer waiting
                    for key in [k for k, v in state.items() if v == "queued" and k.startswith(node + "[")]:
                        del state[key]
                        counts["queued"] -= 1
                    continue
                if was is not None:
                    counts[was] -= 1
                self.done += 1
                if kind == "failed":
                    self.failed += 1
                if isinstance(data, ChatResult):
                    self.tokens_in += data.usage.prompt_tokens
                    self.tokens_out += data.usage.completion_tokens
            elif kind == "retry":
                self.retries += 1

    def columns(self) -> int:
        """The width of the terminal the line is drawn on, read at every redraw (so a resized terminal is
        followed): the stream's own terminal first (stdout may be piped while stderr is a narrow terminal),
        then ``COLUMNS``, then 80."""
        if self.width is not None:
            return self.width
        return terminal_columns(self.out)

    def line(self) -> str:
        """The line for the terminal's width: the most detailed form that fits in all but its last column (a
        line that wraps could not be erased by the next redraw and would stay on the screen, once per frame).
        Details go first (tokens, retries), then the ``runner:`` prefix, then the queued count; what still does
        not fit is cut.
        Empty when not even one column is free."""
        room = self.columns() - 1
        elapsed = f"{self.clock() - self.t0:.1f} s"
        done = f"{self.done} done" + (f" ({self.failed} failed)" if self.failed else "")
        running, queued = f"{self.running} running", f"{self.queued} queued"
        tokens = f"tokens {_k(self.tokens_in)} in / {_k(self.tokens_out)} out"
        retries = f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}" if self.retries else ""
        forms = (
            ("runner: ", [done, running, queued, tokens, retries, elapsed]),
            ("runner: ", [done, running, queued, retries, elapsed]),
            ("runner: ", [done, running, queued, elapsed]),
            ("", [done, running, queued, elapsed]),
            ("", [done, running, elapsed]),
        )
        text = ""
        for prefix, parts in forms:
            text = prefix + ", ".join(p for p in parts if p)
            if len(text) <= room:
                return text
        return text[: max(0, room)]

    def tick(self, recorder: Recorder) -> None:
        events, self._cursor = tail(recorder, self._cursor)
        self.feed(events)
        self.draw()

    def draw(self) -> None:
        # The log listener thread may be writing to the same terminal: skip a frame rather than wait for it.
        if not self.lock.acquire(blocking=False):
            return
        try:
            if not self.at_line_start or self.paused:
                return
            line = self.line()
            if not line:  # a terminal too narrow for anything: erase what an earlier, wider frame drew
                self.hide_locked()
                return
            self.out.write(CLEAR + line)
            self.out.flush()
            self.shown = True
            self.frames += 1
        finally:
            self.lock.release()

    def hide(self) -> None:
        with self.lock:
            self.hide_locked()

    def pause(self) -> None:
        """Erase the line and draw none until :meth:`resume`: a prompt (a human gate) has the terminal."""
        with self.lock:
            self.paused += 1
            self.hide_locked()

    def resume(self) -> None:
        with self.lock:
            self.paused -= 1

    def hide_locked(self) -> None:
        if self.shown:
            self.out.write(CLEAR)
            self.out.flush()
            self.shown = False

    async def run(self, recorder: Recorder, t0: float | None = None) -> None:
        """Redraw every ``interval`` until cancelled; then erase the line. (The events since the last frame
        are not counted at the end: the line they would change is erased, and counting them is work inside the
        run's wall time, 10% of a 10,000-branch fan-out.)"""
        if t0 is not None:
            self.t0 = t0
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.tick(recorder)
        finally:
            self.hide()


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


class ObservedStream:
    """A text stream that erases the progress line before each write and tells it whether the output now
    stands at the start of a line: streamed output on stdout, and log records on stderr (written from the log
    listener's thread, hence the lock). Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO, progress: Progress) -> None:
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        if not text:
            return self._stream.write(text)
        progress = self._progress
        with progress.lock:
            progress.hide_locked()
            progress.at_line_start = text.endswith("\n")
            return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
