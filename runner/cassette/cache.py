"""The response cache for development: ``models.<name>.cache: {responses: {dir, ttl, max_size}}`` (issue 19).

A request made again is answered from the folder instead of the model: keyed as a cassette's requests are
(:mod:`runner.cassette.keys`: the whole body, so a changed prompt or parameter is a miss), one file per answer in
a cassette's entry format (:mod:`runner.cassette.folder`), written atomically. Unlike a cassette it keeps one
answer per request (a fan-out asking the same thing N times gets the same answer N times) and it is bounded:
``ttl`` seconds from when an answer was written, ``max_size`` bytes with the least recently used answers
removed first (a hit sets the file's access time, as the embedding cache's hits do, so the use order outlives
the process). Changes to the folder are made under its ``.lock`` (:class:`runner.locking.FileLock`, the lock
the embedding cache and the vector store take), so concurrent runs sharing a folder keep the bound.

Errors are never cached (only complete answers with a status below 400), and a hit costs no rate-limit budget:
the endpoint asks :meth:`CacheTransport.answers` before it waits for the limiter. The figures (hits, misses,
evictions, bytes) go to the report's ``cache`` section under ``models.<name>``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runner.cassette.folder import Cassette, CassetteError, Entry, render
from runner.cassette.keys import RequestKey, request_key
from runner.cassette.recording import record_answer
from runner.config.openai import ResponseCacheConfig
from runner.fsutil import atomic_write_text
from runner.locking import FileLock
from runner.providers.transport import NODE, Outgoing, Source, Transport, TransportWrapper

SUFFIX = ".json"


@dataclass
class CacheFigures:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    problem: str | None = None


class ResponseCache:
    """One model's response cache folder (see the module docstring). Thread-safe; file I/O is synchronous and
    small (one file per lookup or store)."""

    def __init__(self, name: str, config: ResponseCacheConfig, *, base: str | os.PathLike[str] | None = None) -> None:
        folder = Path(config.dir)
        self.name = name
        self.path = folder if folder.is_absolute() or base is None else Path(base) / folder
        self.ttl = config.ttl
        self.max_size = config.max_size
        self.figures = CacheFigures()
        self._lock = threading.Lock()
        self._file_lock: FileLock | None = None

    def _file(self, key: str) -> Path:
        return self.path / f"{key}{SUFFIX}"

    def _fresh(self, path: Path) -> os.stat_result | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        if self.ttl is not None and time.time() - stat.st_mtime > self.ttl:
            return None
        return stat

    def has(self, key: str) -> bool:
        """Whether a fresh answer to ``key`` is cached (asked before the rate limiter)."""
        return self._fresh(self._file(key)) is not None

    def lookup(self, key: str) -> Entry | None:
        path = self._file(key)
        stat = self._fresh(path)
        if stat is None:
            self.figures.misses += 1
            if path.exists():  # expired: removed, so the folder holds only what can be used
                with self._held():
                    path.unlink(missing_ok=True)
            return None
        try:
            entry = Cassette.load_file(path)
        except CassetteError:
            self.figures.misses += 1
            with self._held():
                path.unlink(missing_ok=True)  # a corrupt entry is a miss, removed
            return None
        if entry.key != key:
            self.figures.misses += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path, ns=(time.time_ns(), stat.st_mtime_ns))  # the use order; the write time stays
        self.figures.hits += 1
        self.figures.bytes_read += stat.st_size
        return entry

    def store(self, key: RequestKey, recorded: dict[str, Any], response: dict[str, Any]) -> None:
        entry = {"runner_cassette": 1, "key": key.digest, "request": key.request, "recorded": recorded}
        text = render(entry, response)
        try:
            with self._held():
                atomic_write_text(self._file(key.digest), text, fsync=False)
                self.figures.bytes_written += len(text.encode("utf-8", "surrogatepass"))
                self._evict()
        except OSError as exc:  # a cache that cannot write never stops the run
            self.figures.problem = f"cannot write in {self.path}: {exc.strerror or exc}"

    def _evict(self) -> None:
        """Remove the least recently used answers until the folder is within ``max_size`` (under the lock)."""
        if self.max_size is None:
            return
        files = []
        total = 0
        for item in os.scandir(self.path):
            if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                stat = item.stat()
                files.append((stat.st_atime_ns, item.path, stat.st_size))
                total += stat.st_size
        for _, path, size in sorted(files):
            if total <= self.max_size:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                total -= size
                self.figures.evictions += 1

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        with self._lock:
            if self._file_lock is None:
                self.path.mkdir(parents=True, exist_ok=True)
                self._file_lock = FileLock(self.path / ".lock")
            with self._file_lock:
                yield

    def close(self) -> None:
        if self._file_lock is not None:
            self._file_lock.close()

    def stats(self) -> dict[str, Any]:
        """The figures as the report's ``cache`` section has them."""
        f = self.figures
        return {
            "hits": f.hits,
            "misses": f.misses,
            "evictions": f.evictions,
            "bytes_read": f.bytes_read,
            "bytes_written": f.bytes_written,
            "dir": str(self.path),
            "problem": f.problem,
        }


class CacheTransport(httpx.AsyncBaseTransport):
    """One model endpoint's transport in front of its response cache: a hit answers at once; a miss goes to the
    inner transport and its complete answer, when not an error, is stored."""

    def __init__(self, cache: ResponseCache, make_inner: Callable[[], Transport], source: Source) -> None:
        self._cache = cache
        self._make_inner = make_inner
        self._inner: Transport | None = None
        self._source = source

    def _key(self, url: httpx.URL, content: bytes) -> RequestKey:
        path = url.path
        base = self._source.base_path
        return request_key(self._source.provider, path[len(base) :] if path.startswith(base) else path, content)

    def answers(self, request: Outgoing) -> bool:
        """Whether the cache holds a fresh answer to ``request`` (asked before the rate limiter)."""
        key = request.memo
        if not isinstance(key, RequestKey):
            key = request.memo = request_key(self._source.provider, request.path, request.payload)
        return self._cache.has(key.digest)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = self._key(request.url, request.content)
        entry = self._cache.lookup(key.digest)
        if entry is not None:
            response = entry.response
            return httpx.Response(
                response["status"], headers=response.get("headers", {}), content=entry.body, request=request
            )
        if self._inner is None:
            self._inner = self._make_inner()
        recorded = {"model": self._source.name, "node": str(request.extensions.get(NODE, ""))}

        def save(response: dict[str, Any]) -> None:
            self._cache.store(key, recorded, response)

        return await record_answer(self._inner, request, save, lambda: None)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
        self._cache.close()


class RunTransports:
    """What wraps the run's endpoints (a :class:`~runner.providers.transport.TransportWrapper`): each cached
    model's cache, inside the run's tape when it records or replays (a replayed answer never reaches the cache;
    a recorded one is whatever the cache or the network answered)."""

    def __init__(self, outer: TransportWrapper | None, caches: dict[str, ResponseCache]) -> None:
        self.outer = outer
        self.caches = caches
        self.needs_key = outer.needs_key if outer is not None else True

    def cache_figures(self) -> dict[str, dict[str, Any]]:
        """Each cache's figures under ``models.<name>``, for the report's ``cache`` section."""
        return {f"models.{name}": cache.stats() for name, cache in self.caches.items()}

    def wrap(self, make_inner: Callable[[], Transport], source: Source) -> Transport:
        cache = self.caches.get(source.name) if source.kind == "model" else None
        if cache is not None:
            cached = CacheTransport(cache, make_inner, source)
            make_inner = lambda: cached  # noqa: E731 - the tape's network is the cache
            if self.outer is None:
                return cached
        if self.outer is None:
            return make_inner()
        return self.outer.wrap(make_inner, source)


def run_transports(
    outer: TransportWrapper | None, models: dict[str, Any], workflow_file: str
) -> TransportWrapper | None:
    """The run's wrapper: ``outer`` (the run's tape, or None) around the response caches of the ``models``
    (name -> settings record) that have one, their folders relative to the workflow file's; ``outer`` itself
    when none has."""
    cached = {name: config.cache for name, config in sorted(models.items()) if getattr(config, "cache", None)}
    if not cached:
        return outer
    base = Path(workflow_file).resolve().parent
    caches = {name: ResponseCache(name, config, base=base) for name, config in cached.items()}
    return RunTransports(outer, caches)


__all__ = ["CacheTransport", "ResponseCache", "RunTransports", "run_transports"]
