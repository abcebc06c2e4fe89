"""Streaming agent output to the terminal as it arrives, one node's text at a time.

One node owns the output at a time and streams through live; text of other nodes streaming at the same
moment waits in a buffer and follows, under a ``[node agent]`` label, when the owner ends its stream or
a line. So parallel agents never interleave mid-line, and a single agent streams token by token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO


class TerminalSink:
    """``for_node(node, agent)`` gives the callback for one node's stream; an empty string ends it."""

    def __init__(self, out: TextIO, *, flush_each: bool = False) -> None:
        self.out = out
        self.flush_each = flush_each
        self._owner: str | None = None
        self._open = False  # the owner's current line has text without a newline yet
        self._pending: dict[str, list[str]] = {}  # node -> buffered text, in arrival order of nodes
        self._ended: set[str] = set()
        self._labels: dict[str, str] = {}

    def for_node(self, node: str, agent: str) -> Callable[[str], None]:
        self._labels[node] = f"[{node}] " if node == agent else f"[{node} {agent}] "

        def on_token(text: str) -> None:
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

        return on_token

    def _write(self, node: str, text: str) -> None:
        if self._owner != node:
            self._owner = node
            self.out.write(self._labels[node])
        self.out.write(text)
        self._open = not text.endswith("\n")

    def _end(self, node: str) -> None:
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
        while self._pending:
            node = next(iter(self._pending))
            text = "".join(self._pending.pop(node))
            self._write(node, text)
            if node in self._ended:
                self._ended.discard(node)
                if self._open:
                    self.out.write("\n")
                    self._open = False
                self._owner = None
                continue
            break

    def close(self) -> None:
        for node in list(self._pending):
            self._ended.add(node)
        self._release()
        self.out.flush()
