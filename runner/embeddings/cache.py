"""The file cache of embeddings (issue 6): an embedder served through a folder of ``.npy`` files, shared safely
between processes.

Layout: ``<dir>/<sha256 of (cache key, text)>.npy``, each a version 1.0 ``.npy`` file of one float32 vector, and
``<dir>/.lock``. Anything else in the folder is left alone (``runner cache clear`` removes only entries and
temporary files). The parts, bottom up:

- :mod:`runner.embeddings.cache_entries`: one entry: its name, its format, reading it (a hit is one ``read``
  checked against the exact header; a corrupt file is a miss, never an error), listing and clearing the folder.
- :mod:`runner.embeddings.cache_ledger`: the folder's lock and the counts kept in it, shared by every process
  (the lock's guarantees on each platform are in :mod:`runner.locking`).
- :mod:`runner.embeddings.cache_folder`: :class:`~runner.embeddings.cache_folder.EmbeddingCache`, the folder
  with its limits: atomic writes without fsync, least-recently-used eviction that holds the limits across
  processes, TTL, the stale temporary files a killed writer left.
- :mod:`runner.embeddings.cache_stats`: the figures for the report, and the problem said once on stderr.
- here, :class:`CachedEmbedder`: looks a batch up, embeds only the misses (each distinct text once), stores them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from runner.config.embeddings import CacheConfig
from runner.embedder import Embedder, Vectors
from runner.embeddings.cache_entries import entry_key
from runner.embeddings.cache_folder import EmbeddingCache
from runner.embeddings.cache_stats import Counters, EmbeddingStats, describe_problem
from runner.errors import ProviderProtocolError

__all__ = ["OFFLOAD_THRESHOLD", "CachedEmbedder"]

# Batches at least this long do their file I/O in a worker thread; below it the thread hop (about 50 us)
# costs more than the I/O holds the loop (a hit is ~10 us). Measured in bench/embedding_cache.py.
OFFLOAD_THRESHOLD = 8

_T = TypeVar("_T")


class CachedEmbedder:
    """An embedder served through a file cache: each batch is looked up first and only the misses (each
    distinct text once) go to ``inner``; their vectors are then stored. With ``cache=None`` it only
    measures, so every embedder has figures for the report.

    File I/O of batches of at least ``offload_threshold`` texts runs in a worker thread, so a large batch
    of hits or stores does not hold the event loop.
    """

    def __init__(
        self,
        inner: Embedder,
        cache: EmbeddingCache | None,
        *,
        offload_threshold: int = OFFLOAD_THRESHOLD,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.offload_threshold = offload_threshold
        self._counters = Counters()

    @classmethod
    def from_config(
        cls, inner: Embedder, config: CacheConfig | None, *, base: str | os.PathLike[str] | None = None
    ) -> CachedEmbedder:
        """``inner`` behind the cache of an ``embeddings.<name>.cache`` block (None: measure only)."""
        return cls(inner, None if config is None else EmbeddingCache.from_config(config, base=base))

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @property
    def cache_key(self) -> str:
        return self.inner.cache_key

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, {self.cache!r})"

    async def embed(self, texts: Sequence[str]) -> Vectors:
        dimensions = self.inner.dimensions
        out = np.empty((len(texts), dimensions), dtype=np.float32)
        if not texts:
            return out
        cache = self.cache
        keys: list[str] = []
        missing: dict[str, list[int]] = {}
        if cache is None:
            for i, text in enumerate(texts):
                missing.setdefault(text, []).append(i)
            self._counters.add(misses=len(texts))
        else:
            keys = [entry_key(self.inner.cache_key, text) for text in texts]
            if not cache.is_open:
                await asyncio.to_thread(cache.open)  # the first scan of the folder can take a while
            found = await self._io(len(keys), cache.get_many, keys, dimensions, self._counters)
            for i, vector in enumerate(found):
                if vector is None:
                    missing.setdefault(texts[i], []).append(i)
                else:
                    out[i] = vector
        if not missing:
            return out

        distinct = list(missing)
        started = time.perf_counter()
        try:
            vectors = await self.inner.embed(distinct)
        finally:
            self._counters.add(embed_seconds=time.perf_counter() - started, embed_calls=1)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(distinct), dimensions):
            raise ProviderProtocolError(
                f"embedder {self.inner.cache_key} returned an array of shape {vectors.shape} for "
                f"{len(distinct)} texts; expected ({len(distinct)}, {dimensions})"
            )
        self._counters.add(texts_embedded=len(distinct))
        to_store: list[tuple[str, Vectors]] = []
        for row, text in enumerate(distinct):
            positions = missing[text]
            out[positions] = vectors[row]
            if cache is not None and np.isfinite(vectors[row]).all():
                to_store.append((keys[positions[0]], vectors[row]))
        if cache is not None and to_store:
            await self._io(len(to_store), cache.put_many, to_store, self._counters)
        return out

    async def aclose(self) -> None:
        if self.cache is not None:
            self.cache.close()
        await self.inner.aclose()

    def stats(self) -> EmbeddingStats:
        files, size = (0, 0) if self.cache is None or not self.cache.is_open else self.cache.usage()
        c = self._counters
        with c.lock:
            return EmbeddingStats(
                embedder=self.inner.cache_key,
                hits=c.hits,
                misses=c.misses,
                evictions=c.evictions,
                expired=c.expired,
                corrupt=c.corrupt,
                write_errors=c.write_errors,
                bytes_read=c.bytes_read,
                bytes_written=c.bytes_written,
                cache_io_seconds=c.cache_io_seconds,
                embed_seconds=c.embed_seconds,
                embed_calls=c.embed_calls,
                texts_embedded=c.texts_embedded,
                files=files,
                cache_bytes=size,
                dir=None if self.cache is None else str(self.cache.dir),
                problem=None if self.cache is None else describe_problem(self.cache.dir, self.cache.open_error, c),
            )

    async def _io(self, count: int, func: Callable[..., _T], *args: Any) -> _T:
        if count >= self.offload_threshold:
            return await asyncio.to_thread(func, *args)
        return func(*args)
