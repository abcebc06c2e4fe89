"""The embedding cache's folder with its limits: lookups, stores, least-recently-used eviction, ``clear``.

- **Limits hold across processes.** ``max_file_number`` and ``max_cache_size`` (bytes of the files) hold after
  every write, whoever wrote: every change to the entries happens under the folder's lock, which also keeps the
  whole folder's counts (:mod:`runner.embeddings.cache_ledger`). A writer adds its files to the ledger and, while
  the ledger is over a limit, evicts the least recently used entries it knows of, oldest first; entries other
  processes wrote since it looked are the newest, so the oldest it knows are the oldest there are. When it knows
  of none, it rescans the folder. Opening the cache rescans it under the lock and sets the ledger from what is
  there, and removes the temporary files a killed writer left (:func:`runner.fsutil.sweep_stale_temps`).
- **The use order** is each process's index (an ordered dict, oldest use first), built from the folder when
  first needed, ordered by each file's access time, and kept up to date incrementally. A hit sets the file's
  access time, so the order survives between runs; the modification time stays the write time, which ``ttl`` is
  measured from. Entries written by other processes join the index when this process reads them.
- **Hits take no lock** (:func:`runner.embeddings.cache_entries.read_entry`); a bad or expired entry found by a
  lookup is removed under the lock.
- **Writes are atomic** (:func:`runner.fsutil.atomic_write_bytes`), so a reader in any process sees no file or a
  whole one. Two processes storing the same key store the same vector (same key = same embedder and text), so
  the last rename wins harmlessly. The cache opts out of fsync, for speed: after a power cut an entry may be
  empty or torn, which reads as corrupt and is embedded again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from runner.config.embeddings import CacheConfig, parse_size
from runner.embedder import Vectors
from runner.embeddings.cache_entries import (
    LEGACY_TMP_NAME,
    SUFFIX,
    encode,
    read_entry,
    remove_cache_files,
    scan_cache_dir,
    size_of,
)
from runner.embeddings.cache_ledger import Ledger
from runner.embeddings.cache_stats import Counters
from runner.fsutil import atomic_write_bytes, sweep_stale_temps

LOCK = ".lock"


class _Entry(NamedTuple):
    size: int
    written_ns: int


class EmbeddingCache:
    """The cache folder ``dir`` with its limits; see the module docstring. Thread-safe; methods are
    synchronous and do file I/O (``CachedEmbedder`` calls them from a worker thread for batches).

    ``clock`` returns nanoseconds since the epoch (a seam for TTL tests); it must agree with file times.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        *,
        max_file_number: int | None = None,
        max_cache_size: int | str | None = None,
        ttl: float | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_file_number is not None and max_file_number < 1:
            raise ValueError(f"max_file_number must be at least 1, not {max_file_number!r}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        self.dir = Path(dir)
        self._prefix = os.path.join(self.dir, "")  # the folder and a separator: entry paths are built often
        self.max_file_number = max_file_number
        self.max_cache_size = None if max_cache_size is None else parse_size(max_cache_size)
        self.ttl = ttl
        self._ttl_ns = None if ttl is None else int(ttl * 1e9)
        self._clock = clock
        self._lock = threading.Lock()  # this process's threads: the index, and the order of lock-file use
        self._index: OrderedDict[str, _Entry] | None = None
        self._bytes = 0  # of the entries in the index
        # The folder's lock and ledger, shared with other processes; None when the lock cannot be taken (a
        # read-only folder: nothing can be written or evicted then either; a file system without locks: each
        # process keeps the limits for what it knows of). The index alone is the ledger then.
        self._shared: Ledger | None = None
        self.open_error: str | None = None  # why the folder could not be used, if it could not

    @classmethod
    def from_config(cls, config: CacheConfig, *, base: str | os.PathLike[str] | None = None) -> EmbeddingCache:
        """The cache for a ``cache:`` block; a relative ``dir`` is taken from ``base`` when given."""
        directory = Path(config.dir)
        if base is not None and not directory.is_absolute():
            directory = Path(base) / directory
        return cls(
            directory,
            max_file_number=config.max_file_number,
            max_cache_size=config.max_cache_size,
            ttl=config.ttl,
        )

    def __repr__(self) -> str:
        return (
            f"EmbeddingCache({str(self.dir)!r}, max_file_number={self.max_file_number}, "
            f"max_cache_size={self.max_cache_size}, ttl={self.ttl})"
        )

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def open(self) -> None:
        """Create the folder and build the index from it (done on first use; call it early, off the event
        loop, to keep that scan out of the first batch). Drops expired entries and stale temporary files
        and brings the folder within the limits."""
        with self._lock:
            self._open_locked()

    def close(self) -> None:
        """Close the lock file; it is opened again if the cache is used after this."""
        with self._lock:
            if self._shared is not None:
                self._shared.close()

    def usage(self) -> tuple[int, int]:
        """(files, bytes) of the whole folder, every process's entries included."""
        with self._lock:
            self._open_locked()
            was_open = self._shared is not None and self._shared.is_open
            try:
                with self._held() as ledger:
                    return ledger
            finally:
                if self._shared is not None and not was_open:
                    self._shared.close()

    def get_many(self, keys: Sequence[str], dimensions: int, counters: Counters | None = None) -> list[Vectors | None]:
        """The cached vector for each key, or None for a miss. Never raises for a bad or missing file."""
        started = time.perf_counter()
        with self._lock:
            self._open_locked()
        if self.open_error is not None:  # no folder to read: every lookup is a plain miss
            if counters is not None:
                counters.add(misses=len(keys), cache_io_seconds=time.perf_counter() - started)
            return [None] * len(keys)
        now = self._clock()
        found: list[Vectors | None] = []
        hits = expired = corrupt = bytes_read = 0
        for key in keys:
            vector, status, size = self._read(key, dimensions, now)
            found.append(vector)
            if status == "hit":
                hits += 1
                bytes_read += size
            elif status == "expired":
                expired += 1
            elif status == "corrupt":
                corrupt += 1
        if counters is not None:
            counters.add(
                hits=hits,
                misses=len(keys) - hits,
                expired=expired,
                corrupt=corrupt,
                bytes_read=bytes_read,
                cache_io_seconds=time.perf_counter() - started,
            )
        return found

    def put_many(self, items: Sequence[tuple[str, Vectors]], counters: Counters | None = None) -> None:
        """Store each (key, vector), then evict the least recently used entries until the limits hold.
        A failed write (disk full, permissions) is counted in ``write_errors`` (the first cause is kept for
        the run's warning) and otherwise ignored: the cache only ever saves work."""
        started = time.perf_counter()
        payloads: list[tuple[str, bytes]] = []
        for key, vector in items:
            payload = encode(vector)
            if self.max_cache_size is not None and len(payload) > self.max_cache_size:
                continue  # could never be kept; storing it would only evict everything else
            payloads.append((key, payload))
        written = errors = evicted = 0
        cause: str | None = None
        with self._lock:
            index = self._open_locked()
            with self._held() as (files, size):
                for key, payload in payloads:
                    path = self._path(key)
                    try:
                        before = size_of(path)
                    except OSError as exc:
                        errors += 1
                        cause = cause or (exc.strerror or str(exc))
                        continue
                    added = (before is None, len(payload) - (before or 0))
                    old = index.pop(key, None)
                    if old is not None:
                        self._bytes -= old.size
                    # Room first, then the write: the folder is never over a limit, even for a moment.
                    if self._over(files + added[0], size + added[1]):
                        files, size, dropped = self._evict_locked(files, size, room=added)
                        evicted += dropped
                    try:
                        # No fsync, for speed (a store costs a fraction of a bare save, bench/embedding_cache.py):
                        # an entry a power cut tears reads as corrupt, is removed and embedded again.
                        atomic_write_bytes(path, payload, fsync=False, make_parents=False)
                    except OSError as exc:
                        errors += 1
                        cause = cause or (exc.strerror or str(exc))
                        continue
                    files, size = files + added[0], size + added[1]
                    written += len(payload)
                    self._bytes += len(payload)
                    index[key] = _Entry(len(payload), self._clock())
                self._store_ledger(files, size)
        if counters is not None:
            counters.add(
                bytes_written=written,
                write_errors=errors,
                evictions=evicted,
                cache_io_seconds=time.perf_counter() - started,
            )
            if cause is not None and counters.write_error is None:
                counters.write_error = cause

    def clear(self) -> tuple[int, int]:
        """Remove every cache file in the folder (see :func:`remove_cache_files`); return (files, bytes)."""
        with self._lock:
            self._open_locked()
            with self._held():
                removed = remove_cache_files(self.dir)
                assert self._index is not None
                self._index.clear()
                self._bytes = 0
                self._store_ledger(0, 0)
            return removed

    # -- internals ---------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return f"{self._prefix}{key}{SUFFIX}"

    def _open_locked(self) -> OrderedDict[str, _Entry]:
        """Caller holds ``self._lock``."""
        if self._index is not None:
            return self._index
        self._index = OrderedDict()
        self._bytes = 0
        try:
            if self.dir.exists() and not self.dir.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # An unusable folder (a file in its place, no permission): every lookup misses and every
            # write fails and is counted in write_errors; the run goes on without the cache.
            self.open_error = f"{self.dir}: {exc.strerror or exc}"
            return self._index
        ledger = Ledger(self.dir / LOCK)
        self._shared = ledger if ledger.usable() else None  # a read-only folder: hits still work
        with ledger.hold() if self._shared is not None else contextlib.nullcontext():
            sweep_stale_temps(self.dir, legacy=LEGACY_TMP_NAME, now_ns=self._clock())
            # The ledger is set from what is there: a process killed part way through a batch is forgiven.
            files, size = self._rescan_locked()
            self._store_ledger(*self._evict_locked(files, size)[:2])
        return self._index

    @contextlib.contextmanager
    def _held(self) -> Iterator[tuple[int, int]]:
        """Hold the folder's lock (caller holds ``self._lock``) and yield the ledger: the folder's (files,
        bytes). Without a lock file, the index is the ledger."""
        shared = self._shared
        if shared is None:
            assert self._index is not None
            yield len(self._index), self._bytes
            return
        with shared.hold():
            ledger = shared.read()
            yield ledger if ledger is not None else self._rescan_locked()  # a new lock file: count the folder

    def _store_ledger(self, files: int, size: int) -> None:
        if self._shared is not None:
            self._shared.write(files, size)

    def _rescan_locked(self) -> tuple[int, int]:
        """Rebuild the index from the folder (oldest use first) and drop expired entries; return the folder's
        (files, bytes). Caller holds both locks."""
        entries, _ = scan_cache_dir(self.dir)
        now = self._clock()
        index: OrderedDict[str, _Entry] = OrderedDict()
        total = 0
        for entry in entries:
            if self._ttl_ns is not None and now - entry.written_ns > self._ttl_ns:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.dir, entry.name))
                continue
            index[entry.name[: -len(SUFFIX)]] = _Entry(entry.size, entry.written_ns)
            total += entry.size
        self._index = index
        self._bytes = total
        return len(index), total

    def _over(self, files: int, size: int) -> bool:
        return (self.max_file_number is not None and files > self.max_file_number) or (
            self.max_cache_size is not None and size > self.max_cache_size
        )

    def _evict_locked(self, files: int, size: int, room: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
        """Evict the least recently used entries this process knows of until the folder's (files, size), plus
        ``room`` for an entry about to be written, are within the limits; return the new (files, size) and the
        number evicted. Caller holds both locks."""
        index = self._index
        assert index is not None
        evicted = 0
        rescanned = False
        while self._over(files + room[0], size + room[1]):
            if not index:
                if rescanned or self._shared is None:
                    break
                # Every entry it knew of is gone, yet the folder is over: others wrote them. Look again.
                files, size = self._rescan_locked()
                index = self._index
                rescanned = True
                continue
            key, entry = index.popitem(last=False)
            self._bytes -= entry.size
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                continue  # evicted by another process, which took it off the ledger
            except OSError:
                break  # a read-only folder: nothing can be evicted
            files -= 1
            size -= entry.size
            evicted += 1
        return files, size, evicted

    def _read(self, key: str, dimensions: int, now: int) -> tuple[Vectors | None, str, int]:
        """(vector or None, status, bytes read); status: hit, absent, expired, corrupt."""
        vector, status, size, written_ns = read_entry(self._path(key), dimensions, now, self._ttl_ns)
        if vector is None:
            if status == "absent":
                self._forget(key)
            else:
                self._discard(key)
            return None, status, 0
        with self._lock:
            index = self._index
            assert index is not None
            if key in index:
                index.move_to_end(key)
            else:  # written by another process since we looked: adopt it (it is on the ledger already)
                index[key] = _Entry(size, written_ns)
                self._bytes += size
            return vector, status, size

    def _forget(self, key: str) -> None:
        with self._lock:
            assert self._index is not None
            entry = self._index.pop(key, None)
            if entry is not None:
                self._bytes -= entry.size

    def _discard(self, key: str) -> None:
        """Remove a bad or expired entry, and take it off the ledger."""
        self._forget(key)
        with self._lock, self._held() as (files, size):
            path = self._path(key)
            try:
                before = size_of(path)
                if before is None:
                    return
                os.unlink(path)
            except OSError:
                return  # a folder in its place, a read-only folder: left as it is
            self._store_ledger(files - 1, size - before)
