"""The embedding cache's figures for the timing report, and what went wrong with it, in words.

Problems are told, not only counted: a folder that cannot be used, failed writes (with the first cause) and
corrupt entries make :attr:`EmbeddingStats.problem`, which the run prints once on stderr and the report's
bottlenecks repeat.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class Counters:
    """Mutable counts behind :class:`EmbeddingStats`; updated under ``lock`` (cache I/O runs in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0
        self.corrupt = 0
        self.write_errors = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.cache_io_seconds = 0.0
        self.embed_seconds = 0.0
        self.embed_calls = 0
        self.texts_embedded = 0
        self.write_error: str | None = None  # the cause of the first failed write

    def add(self, **deltas: float) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


@dataclass(frozen=True, slots=True)
class EmbeddingStats:
    """A snapshot of one embedder's cache and embedding figures, for the timing report.

    ``misses`` counts texts not served from the cache (``expired`` and ``corrupt`` ones included);
    ``texts_embedded`` counts the distinct texts sent to the embedder; ``files`` and ``cache_bytes`` are
    the cache folder's size, all processes' entries included (0 without a cache). ``dir`` is the cache
    folder (None without a cache); ``problem`` says what went wrong with it in this run, if anything.
    """

    embedder: str
    hits: int
    misses: int
    evictions: int
    expired: int
    corrupt: int
    write_errors: int
    bytes_read: int
    bytes_written: int
    cache_io_seconds: float
    embed_seconds: float
    embed_calls: int
    texts_embedded: int
    files: int
    cache_bytes: int
    dir: str | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_problem(directory: Path, open_error: str | None, counters: Counters) -> str | None:
    """What went wrong with the cache folder ``directory`` in this run, for the run's warning and advice;
    None if nothing. ``open_error`` is why the folder could not be used, if it could not."""
    parts = []
    if open_error is not None:
        parts.append(f"cannot use the folder ({open_error.removeprefix(f'{directory}: ')}): nothing is cached")
    elif counters.write_errors:
        n = counters.write_errors
        parts.append(
            f"{n} write{'s' if n != 1 else ''} failed ({counters.write_error}): "
            f"{'those texts' if n != 1 else 'that text'} will be embedded again next time"
        )
    if counters.corrupt:
        n = counters.corrupt
        parts.append(f"{n} corrupt entr{'ies' if n != 1 else 'y'} removed and embedded again")
    return "; ".join(parts) or None
