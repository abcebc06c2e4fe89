"""An agent's full conversation on disk: ``<run_dir>/memory/<agent>.jsonl``, one JSON line per message, never rewritten.

Lines are buffered and written at each turn (or once ``FLUSH_BYTES`` are waiting), in whole lines or not at all
(:func:`runner.fsutil.append_whole`), and fsynced when the memory closes. A history left by a crash of an earlier
memory under the same name is continued: its numbering goes on, and a line it left cut short is ended first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.errors import RunError
from runner.fsutil import WriteError, append_whole
from runner.providers.base import Message

# add() buffers history lines; past this many bytes it writes at once instead of waiting for context().
FLUSH_BYTES = 1 << 20


class History:
    """The full history of one agent as JSONL at ``path``, appended in whole lines; remembers where each
    line starts, so a range of it is read back with one seek."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: list[int] = []  # line n (1-based) starts at byte offsets[n - 1]
        self._buffer: list[bytes] = []
        self._buffered = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:  # a file in the run folder's place, a read-only or full disk
            raise WriteError(path, exc) from exc
        self._size = os.fstat(self._fd).st_size
        if self._size:
            # A second memory under the same name in one run: go on numbering after its lines.
            position = 0
            last = b""
            with path.open("rb") as existing:
                for line in existing:
                    self.offsets.append(position)
                    position += len(line)
                    last = line
            if not last.endswith(b"\n"):  # a line cut short by a crash: end it so ours start whole
                self._write(b"\n")

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def written(self) -> int:
        """Lines on disk (the rest are buffered)."""
        return len(self.offsets) - len(self._buffer)

    def append(self, message: Message) -> int:
        try:
            text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
            line = (text + "\n").encode()
        except UnicodeEncodeError:  # a lone surrogate; escaped JSON stays valid UTF-8
            line = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
        self.offsets.append(self._size + self._buffered)
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= FLUSH_BYTES:
            self.flush()
        return len(self.offsets)

    def flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._write(data)
        self._buffer.clear()
        self._buffered = 0

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise RunError(f"memory history {self.path} is closed")
        # Whole lines or nothing: a failed append is cut back, so the file never ends in half a line.
        self._size = append_whole(self._fd, data, self._size, self.path)

    def read(self, first: int, last: int) -> list[Message]:
        """Written lines ``first`` to ``last`` (1-based, inclusive), as messages; a line that is not JSON
        (cut short by a crash of an earlier run under the same name) reads as a note saying so.

        Never writes, so a tool running in a worker thread can call it while the loop appends.
        """
        start = self.offsets[first - 1]
        end = self.offsets[last] if last < len(self.offsets) else self._size
        with self.path.open("rb") as file:
            file.seek(start)
            data = file.read(end - start)
        messages: list[Message] = []
        for line in data.splitlines():
            try:
                messages.append(json.loads(line))
            except ValueError:
                messages.append({"role": "unknown", "content": "(this line of the history is damaged)"})
        return messages

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
