"""Streaming agent output to the terminal as it arrives, one node's text at a time.

One node owns the output at a time and streams through live; text of other nodes streaming at the same
moment waits in a buffer and follows, under a ``[node agent]`` label, when the owner ends its stream or
a line. So parallel agents never interleave mid-line, and a single agent streams token by token.

Other writers to the same terminal (the log's warnings on stderr) go through :meth:`TerminalSink.guard`,
which ends an open line first, so a warning never starts in the middle of streamed text; the node's text
then resumes under its label. A streamed answer that restarted after a retry and came out different says so
(:data:`RESTART_NOTE`): text already on the screen cannot be taken back.
"""

from __future__ import annotations

import os
import threading
from typing import Any, TextIO

RESTART_NOTE = "(retried: the partial answer above is void; the new answer follows)"


class NodeStream:
    """The token callback of one node (what :meth:`TerminalSink.for_node` returns): call it with text as it
    arrives and with ``""`` at the end; :meth:`restart` says that the text shown so far is void."""

    __slots__ = ("_sink", "_node")

    def __init__(self, sink: TerminalSink, node: str) -> None:
        self._sink = sink
        self._node = node

    def __call__(self, text: str) -> None:
        self._sink._token(self._node, text)

    def restart(self) -> None:
        self._sink._restart(self._node)


class TerminalSink:
    """``for_node(node, agent)`` gives the callback for one node's stream; an empty string ends it."""

    def __init__(self, out: TextIO, *, flush_each: bool = False) -> None:
        self.out = out
        self.flush_each = flush_each
        self.lock = threading.Lock()  # the loop thread streams, the log listener's thread writes warnings
        self._owner: str | None = None
        self._open = False  # the owner's current line has text without a newline yet
        self._relabel = False  # another writer ended the owner's line: its next text starts with its label
        self._pending: dict[str, list[str]] = {}  # node -> buffered text, in arrival order of nodes
        self._ended: set[str] = set()
        self._shown: set[str] = set()  # nodes with text on the screen (until their stream ends)
        self._labels: dict[str, str] = {}

    def for_node(self, node: str, agent: str) -> NodeStream:
        self._labels[node] = f"[{node}] " if node == agent else f"[{node} {agent}] "
        return NodeStream(self, node)

    def guard(self, stream: TextIO) -> TextIO:
        """``stream`` (another stream on the same terminal, stderr) made to end this sink's open line before
        each write."""
        return _Guarded(stream, self)  # type: ignore[return-value]

    def _token(self, node: str, text: str) -> None:
        with self.lock:
            if not text:
                self._end(node)
            elif self._owner == node and not self._open and self._pending:
                # the owner starts a new line while others wait: their turn first
                self._pending.setdefault(node, []).append(text)
                self._release()
            elif self._owner is None or self._owner == node:
                self._write(node, text)
                if self._open is False and self._pending:
                    self._release()
            else:
                self._pending.setdefault(node, []).append(text)
            if self.flush_each:
                self.out.flush()

    def _restart(self, node: str) -> None:
        with self.lock:
            self._pending.pop(node, None)  # not on the screen yet: simply dropped
            if node not in self._shown:
                return
            note = RESTART_NOTE + "\n" + self._labels[node]  # the new answer follows under the label
            if self._owner is None or self._owner == node:
                if self._owner == node and self._open:
                    self.out.write("\n")
                    self._open = False
                    self._relabel = True
                self._write(node, note)
            else:
                self._pending[node] = [note]
            self.out.flush()

    def _write(self, node: str, text: str) -> None:
        if self._owner != node or self._relabel:
            self._owner = node
            self._relabel = False
            self.out.write(self._labels[node])
        self.out.write(text)
        self._shown.add(node)
        self._open = not text.endswith("\n")

    def _end(self, node: str) -> None:
        self._shown.discard(node)
        if self._owner == node:
            self._release()
        elif node in self._pending:
            self._ended.add(node)

    def _release(self) -> None:
        """The owner finished a line or its stream: end the line and hand over to a waiting node."""
        if self._open:
            self.out.write("\n")
            self._open = False
        self._owner = None
        self._relabel = False
        while self._pending:
            node = next(iter(self._pending))
            text = "".join(self._pending.pop(node))
            self._write(node, text)
            if node in self._ended:
                self._ended.discard(node)
                self._shown.discard(node)
                if self._open:
                    self.out.write("\n")
                    self._open = False
                self._owner = None
                continue
            break

    def break_line(self) -> None:
        """End the owner's open line (another writer is about to write on the same terminal); the owner's
        next text starts on a new line under its label."""
        with self.lock:
            self._break_line()

    def _break_line(self) -> None:
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False
            self._relabel = True

    def close(self) -> None:
        with self.lock:
            for node in list(self._pending):
                self._ended.add(node)
            self._release()
            self.out.flush()


class _Guarded:
    """A stream that ends the sink's open line before each write (see :meth:`TerminalSink.guard`)."""

    def __init__(self, stream: TextIO, sink: TerminalSink) -> None:
        self._stream = stream
        self._sink = sink

    def write(self, text: str) -> int:
        if not text:
            return self._stream.write(text)
        sink = self._sink
        with sink.lock:
            sink._break_line()
            sink.out.flush()  # streamed text written before this line goes out before it (stdout is buffered)
            return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def same_terminal(a: TextIO, b: TextIO) -> bool:
    """Whether two streams end up in the same place (one terminal, or ``2>&1`` into one pipe or file), so
    that text on one can land in the middle of a line of the other."""
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (AttributeError, OSError, ValueError):  # no file descriptor (a StringIO, a captured stream)
        return False
