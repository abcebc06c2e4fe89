"""``<run folder>/results.jsonl``: one JSON line per row, written once, whole, as each row finishes.

A line is one ``write`` to a file opened with ``O_APPEND`` (:func:`runner.fsutil.append_whole`), so a reader
tailing the file never sees half a line from a live run, and a disk that fills cuts the file back rather than
leaving half a line. A process killed mid-write can still leave a torn last line: :func:`reconcile` cuts it off
before a resume appends, and tells the ledger which rows the file holds (the file decides what is done).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.fsutil import WriteError, append_whole, atomic_write_with, open_for_appends

RESULTS_NAME = "results.jsonl"


class ResultsFile:
    """The results file open for appending; :meth:`append` writes one row's line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd, self.size = open_for_appends(path)

    def append(self, line: dict[str, Any]) -> None:
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode("utf-8", "surrogatepass")
        self.size = append_whole(self.fd, data, self.size, self.path)

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise WriteError(self.path, exc, "sync") from exc

    def close(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError:
            pass  # closing still releases the file; a failed sync was said by the last append
        os.close(self.fd)


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The whole lines of a results file, parsed (a torn last line is not one)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; a missing file has no lines
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):
                return
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not ours: a resume runs the row again rather than trust it
            if isinstance(line, dict) and isinstance(line.get("index"), int):
                yield line


def reconcile(path: Path, *, drop_failed: bool) -> list[tuple[int, str, bool, str | None]]:
    """Make the file end in a whole line and return (index, key, ok, error) of each row it holds, once each.
    ``drop_failed`` (``--retry-errors``): failed rows' lines are removed (the file is rewritten atomically), so
    that the rows run again and appear once."""
    _cut_torn_tail(path)
    seen: set[int] = set()
    kept: list[tuple[int, str, bool, str | None]] = []
    dropped = False
    for line in read_lines(path):
        index = line["index"]
        ok = line.get("status") == "ok"
        if index in seen or (drop_failed and not ok):
            dropped = True
            continue
        seen.add(index)
        kept.append((index, str(line.get("key", index)), ok, line.get("error")))
    if dropped:
        keep = {i for i, *_ in kept}
        written: set[int] = set()

        def write(out: Any) -> None:
            for line in read_lines(path):
                if line["index"] in keep and line["index"] not in written:
                    written.add(line["index"])
                    out.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass"))

        atomic_write_with(path, write)
    return kept


def _cut_torn_tail(path: Path) -> None:
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            # Step back to the last line break: what follows it is a line a killed writer did not finish.
            end = size
            while end > 0:
                step = min(65536, end)
                f.seek(end - step)
                block = f.read(step)
                cut = block.rfind(b"\n")
                if cut != -1:
                    end = end - step + cut + 1
                    break
                end -= step
            if end != size:
                f.truncate(end)
    except FileNotFoundError:
        return
