"""``runner cache stats|clear DIR``: look at or empty a file cache of embeddings."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TextIO

from runner.embeddings.cache_entries import remove_cache_files, scan_cache_dir

ACTIONS = ("stats", "clear")


def cache_command(action: str, directory: str, out: TextIO) -> int:
    """``stats`` prints the number of cache files, their bytes and the oldest and newest write; ``clear``
    removes the cache files (entries and leftover temporary files) and nothing else."""
    if action not in ACTIONS:
        out.write(f"runner cache: unknown action {action!r}; use one of: {', '.join(ACTIONS)}\n")
        return 2
    if not os.path.isdir(directory):
        out.write(f"runner cache: {directory}: no such folder\n")
        return 1
    if action == "clear":
        files, size = remove_cache_files(directory)
        out.write(f"removed {files} cache file{'' if files == 1 else 's'} ({format_bytes(size)}) from {directory}\n")
        return 0
    entries, temps = scan_cache_dir(directory)
    total = sum(e.size for e in entries)
    lines = [
        f"cache:   {directory}",
        f"files:   {len(entries)}",
        f"bytes:   {format_bytes(total)}",
    ]
    if entries:
        written = [e.written_ns for e in entries]
        lines.append(f"oldest:  {_when(min(written))} (written)")
        lines.append(f"newest:  {_when(max(written))} (written)")
        lines.append(f"used:    {_when(max(e.used_ns for e in entries))} (last hit or write)")
    if temps:
        lines.append(f"temporary files: {len(temps)} (writes in progress, or left by a crashed writer)")
    out.write("\n".join(lines) + "\n")
    return 0


def format_bytes(size: int) -> str:
    """``1234567`` -> ``1,234,567 B (1.2 MB)``: the exact count, then decimal units as in ``256MB``."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{size:,} B ({value:.1f} {unit})"


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
