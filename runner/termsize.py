"""The width of a terminal, as ``shutil.get_terminal_size`` reads it, without importing shutil (which imports
zlib, bz2 and lzma: 5 ms of every command's start)."""

from __future__ import annotations

import os
import sys
from typing import Any


def _size(stream: Any) -> int:
    try:
        return int(os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, OSError, ValueError):  # not a file, not a terminal, or closed
        return 0


def columns(stream: Any = None) -> int:
    """``stream``'s own terminal width first, when it is one (stdout may be piped while stderr is a narrow
    terminal; a fresh pty says 0); then ``$COLUMNS``, then standard output's terminal, else 80 (shutil's order)."""
    width = _size(stream) if stream is not None else 0
    if width > 0:
        return width
    try:
        width = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        width = 0
    return width if width > 0 else (_size(sys.__stdout__) or 80)
