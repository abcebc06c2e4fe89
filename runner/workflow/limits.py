"""The limits on workflow files: their size, checked before the file is parsed, and how many values and how
deep a nesting the YAML loader (runner/workflow/document.py) builds.

PyYAML composes the whole node graph before anything else can look at it, in pure Python: a 50 MB file
would take minutes and gigabytes. Workflow files are small (the largest examples are a few kilobytes),
so anything above ``MAX_FILE_BYTES`` is refused after reading at most that many bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from runner.diagnostics import Diagnostic

MAX_FILE_BYTES = 1 << 20
# An alias bomb ("billion laughs") is a small file whose aliases expand exponentially; cap the number
# of values built so such a file fails fast with a located message instead of exhausting memory.
MAX_NODES = 200_000
MAX_DEPTH = 200


def read_limited(path: str | Path) -> tuple[bytes, int]:
    """At most ``MAX_FILE_BYTES + 1`` bytes of the file, and its full size. Raises OSError, also for a path
    that is not a regular file (reading a FIFO or a terminal would wait forever)."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise OSError(errno.EISDIR, "it is a folder", str(path))
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(MAX_FILE_BYTES + 1)
    return data, max(size, len(data))


def too_large(file: str, data: bytes, size: int) -> Diagnostic | None:
    """A located error when the file is over the limit: at the position where the limit is crossed."""
    if len(data) <= MAX_FILE_BYTES and size <= MAX_FILE_BYTES:
        return None
    head = data[:MAX_FILE_BYTES]
    line = head.count(b"\n") + 1
    column = len(head) - (head.rfind(b"\n") + 1) + 1
    return Diagnostic(
        file,
        line,
        column,
        line,
        column + 1,
        "error",
        "file-too-large",
        f"the file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes for a workflow; reading stopped here",
        "split the workflow, or move large data into files that tools or inputs read",
    )
