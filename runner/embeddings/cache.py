"""The file cache of embeddings (issue 6): one ``.npy`` file per text, shared safely between processes.

Layout: ``<dir>/<sha256 of (cache key, text)>.npy``, each a version 1.0 ``.npy`` file of one float32
vector, and ``<dir>/.lock``. Anything else in the folder is left alone (``runner cache clear`` removes only
entries and temporary files).

- **Atomic writes.** A vector is written through :func:`runner.fsutil.atomic_write_bytes` (a temporary file
  in the same folder, ``os.replace``d into place), so a reader in any process sees no file or a whole one.
  Two processes storing the same key store the same vector (same key = same embedder and text), so the
  last rename wins harmlessly. The cache opts out of fsync, for speed: after a power cut an entry may be
  empty or torn, which reads as corrupt and is embedded again.
- **Corrupt files are misses.** A file that is short, has the wrong header, dtype or shape, or holds a
  non-finite number is removed, counted in ``corrupt`` and embedded again; it never raises.
- **Limits hold across processes** (issue 21: four processes on one cache reached 3-4x its limits).
  ``max_file_number`` and ``max_cache_size`` (bytes of the files) hold after every write, whoever wrote:
  every change to the entries (a write, an eviction, a removed corrupt entry, ``clear``) happens under the
  folder's lock (:class:`runner.locking.FileLock` on ``.lock``), which also keeps the whole folder's file count
  and bytes (the ledger, 16 bytes in the lock file). A writer adds its files to the ledger and, while the
  ledger is over a limit, evicts the least recently used entries it knows of, oldest first; entries other
  processes wrote since it looked are the newest, so the oldest it knows are the oldest there are. When it
  knows of none, it rescans the folder. Opening the cache rescans it under the lock and sets the ledger from
  what is there, so a process killed part way through a batch leaves a ledger that the next run corrects.
- **The use order** is each process's index (an ordered dict, oldest use first), built from the folder when
  first needed, ordered by each file's access time, and kept up to date incrementally. A hit sets the file's
  access time, so the order survives between runs; the modification time stays the write time, which
  ``ttl`` is measured from. Entries written by other processes join the index when this process reads them.
- **Hits are cheap and take no lock.** The header of a vector of ``d`` floats is always the same bytes, so a
  hit is one ``read`` compared against that header and an ``np.frombuffer``; files with any other header go
  through ``np.load(allow_pickle=False)`` and are then checked like the rest.
- **Temporary files a killed writer left** are removed when the cache is opened, if their writer is gone
  (:func:`runner.fsutil.sweep_stale_temps`).
- **Problems are told**, not only counted: a folder that cannot be used, failed writes (with the first
  cause) and corrupt entries make :attr:`EmbeddingStats.problem`, which the run prints once on stderr and
  the report's bottlenecks repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from runner.config.embeddings import CacheConfig, parse_size
from runner.embeddings.base import Embedder, Vectors
from runner.errors import ProviderProtocolError
from runner.fsutil import atomic_write_bytes, sweep_stale_temps
from runner.locking import FileLock

__all__ = [
    "CachedEmbedder",
    "CacheFile",
    "EmbeddingCache",
    "EmbeddingStats",
    "entry_key",
    "is_cache_file",
    "parse_size",
    "remove_cache_files",
    "scan_cache_dir",
]

SUFFIX = ".npy"
LOCK = ".lock"
_ENTRY_NAME = re.compile(r"^[0-9a-f]{64}\.npy$")
# runner.fsutil's temporary names for entries, and those of earlier versions (.tmp-<key>.<pid>.<thread>.<n>).
_TMP_NAME = re.compile(
    r"^\.[0-9a-f]{64}\.npy\.[0-9]+-[0-9a-f]{6}-[0-9]+\.tmp$|^\.tmp-[0-9a-f]{64}\.[0-9]+\.[0-9]+\.[0-9]+$"
)
_LEGACY_TMP_NAME = re.compile(r"^\.tmp-[0-9a-f]{64}\.[0-9]+\.[0-9]+\.[0-9]+$")
# The ledger in the lock file: the folder's entry count and their bytes.
_LEDGER = struct.Struct("<QQ")
# Bytes a foreign writer's header may exceed ours by before a file is judged without reading it.
_HEADER_SLACK = 4096
# Batches at least this long do their file I/O in a worker thread; below it the thread hop (about 50 us)
# costs more than the I/O holds the loop (a hit is ~10 us). Measured in bench/embedding_cache.py.
OFFLOAD_THRESHOLD = 8

_T = TypeVar("_T")


def entry_key(cache_key: str, text: str) -> str:
    """The file stem for ``text`` embedded by the embedder with ``cache_key`` (provider/model/dimensions)."""
    digest = hashlib.sha256(cache_key.encode("utf-8"))
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def is_cache_file(name: str) -> bool:
    """Whether a file name in a cache folder is one of ours: an entry or a temporary file."""
    return bool(_ENTRY_NAME.match(name) or _TMP_NAME.match(name))


@cache
def _header(dimensions: int) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(dimensions, dtype="<f4"), version=(1, 0))
    return buffer.getvalue()[: -4 * dimensions]


class CacheFile(NamedTuple):
    """One entry on disk, as ``runner cache stats`` and the index see it (times in ns since the epoch)."""

    name: str
    size: int
    written_ns: int
    used_ns: int


def scan_cache_dir(directory: str | os.PathLike[str]) -> tuple[list[CacheFile], list[str]]:
    """The entries in ``directory`` (oldest use first) and the names of temporary files. A missing folder
    holds nothing."""
    entries: list[CacheFile] = []
    temps: list[str] = []
    try:
        scanner = os.scandir(directory)
    except FileNotFoundError:
        return entries, temps
    with scanner:
        for item in scanner:
            if _ENTRY_NAME.match(item.name):
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # evicted by another process while we looked
                entries.append(CacheFile(item.name, st.st_size, st.st_mtime_ns, st.st_atime_ns))
            elif _TMP_NAME.match(item.name):
                temps.append(item.name)
    entries.sort(key=lambda e: (e.used_ns, e.name))
    return entries, temps


def remove_cache_files(directory: str | os.PathLike[str]) -> tuple[int, int]:
    """Remove the entries and temporary files in ``directory``, whoever wrote them, and return (files,
    bytes) removed. Other files, and the folder itself, are left alone."""
    entries, temps = scan_cache_dir(directory)
    removed = freed = 0
    for name, size in [(e.name, e.size) for e in entries] + [(t, 0) for t in temps]:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        removed += 1
        freed += size
    return removed, freed


class _Entry(NamedTuple):
    size: int
    written_ns: int


class _Counters:
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


class EmbeddingCache:
    """The cache folder ``dir`` with its limits; see the module docstring. Thread-safe; methods are
    synchronous and do file I/O (:class:`CachedEmbedder` calls them from a worker thread for batches).

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
        # The folder's lock, shared with other processes; None when the lock file cannot be made (a read-only
        # folder: nothing can be written or evicted then either, and the index alone is the ledger).
        self._shared: FileLock | None = None
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

    def get_many(self, keys: Sequence[str], dimensions: int, counters: _Counters | None = None) -> list[Vectors | None]:
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

    def put_many(self, items: Sequence[tuple[str, Vectors]], counters: _Counters | None = None) -> None:
        """Store each (key, vector), then evict the least recently used entries until the limits hold.
        A failed write (disk full, permissions) is counted in ``write_errors`` (the first cause is kept for
        the run's warning) and otherwise ignored: the cache only ever saves work."""
        started = time.perf_counter()
        payloads: list[tuple[str, bytes]] = []
        for key, vector in items:
            payload = _header(len(vector)) + np.ascontiguousarray(vector, dtype="<f4").tobytes()
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
                        before = _size_of(path)
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
        lock = FileLock(self.dir / LOCK)
        try:
            lock.acquire()
        except OSError:
            self._shared = None  # a read-only folder: hits still work; writes fail and are counted
        else:
            lock.release()
            self._shared = lock
        shared = self._shared
        with shared if shared is not None else contextlib.nullcontext():
            sweep_stale_temps(self.dir, legacy=_LEGACY_TMP_NAME, now_ns=self._clock())
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
        with shared:
            os.lseek(shared.fd, 0, os.SEEK_SET)  # not pread: Windows has none; both locks are held
            data = os.read(shared.fd, _LEDGER.size)
            if len(data) == _LEDGER.size:
                yield _LEDGER.unpack(data)
            else:  # a new lock file: count what is there
                yield self._rescan_locked()

    def _store_ledger(self, files: int, size: int) -> None:
        if self._shared is not None:
            try:
                os.lseek(self._shared.fd, 0, os.SEEK_SET)
                os.write(self._shared.fd, _LEDGER.pack(max(files, 0), max(size, 0)))
            except OSError:
                pass  # a full disk: the next opening of the cache counts the folder again

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
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            self._forget(key)
            return None, "absent", 0
        except OSError:  # a folder in its place, no permission, ...
            self._discard(key)
            return None, "corrupt", 0
        vector: Vectors | None = None
        try:
            st = os.fstat(fd)
            if self._ttl_ns is not None and now - st.st_mtime_ns > self._ttl_ns:
                status = "expired"
            elif st.st_size > len(_header(dimensions)) + 4 * dimensions + _HEADER_SLACK:
                status = "corrupt"  # far too big to be one vector: not worth reading
            else:
                data = os.read(fd, st.st_size + 1)
                vector = _decode(data, dimensions)
                status = "corrupt" if vector is None else "hit"
            if vector is not None:
                # The access time records the last use (it orders eviction, also for the next run); the
                # modification time stays the write time, which ttl counts from.
                try:
                    os.utime(fd if _UTIME_FD else path, ns=(now, st.st_mtime_ns))
                except OSError:
                    pass  # a read-only folder: the use order is then kept in memory only
        except OSError:
            vector, status = None, "corrupt"
        finally:
            os.close(fd)  # before any unlink: Windows cannot remove an open file
        if vector is None:
            self._discard(key)
            return None, status, 0
        with self._lock:
            index = self._index
            assert index is not None
            if key in index:
                index.move_to_end(key)
            else:  # written by another process since we looked: adopt it (it is on the ledger already)
                index[key] = _Entry(len(data), st.st_mtime_ns)
                self._bytes += len(data)
            return vector, status, len(data)

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
                before = _size_of(path)
                if before is None:
                    return
                os.unlink(path)
            except OSError:
                return  # a folder in its place, a read-only folder: left as it is
            self._store_ledger(files - 1, size - before)

    def problem(self, counters: _Counters) -> str | None:
        """What went wrong with the folder in this run, for the run's warning and advice; None if nothing."""
        parts = []
        if self.open_error is not None:
            parts.append(f"cannot use the folder ({self.open_error.removeprefix(f'{self.dir}: ')}): nothing is cached")
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


def _size_of(path: str) -> int | None:
    """The size of the file at ``path``, or None when there is none."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


_UTIME_FD = os.utime in os.supports_fd


def _decode(data: bytes, dimensions: int) -> Vectors | None:
    """The vector in a file's bytes, or None when they are not one float32 vector of ``dimensions``."""
    header = _header(dimensions)
    if len(data) == len(header) + 4 * dimensions and data.startswith(header):
        vector: Vectors = np.frombuffer(data, dtype="<f4", count=dimensions, offset=len(header))
    else:
        stream = io.BytesIO(data)
        try:
            loaded = np.load(stream, allow_pickle=False)
        except Exception:  # numpy raises ValueError, EOFError, OSError, ... for malformed files
            return None
        if (
            not isinstance(loaded, np.ndarray)
            or loaded.dtype != np.float32
            or loaded.shape != (dimensions,)
            or stream.tell() != len(data)  # trailing bytes: not a file we wrote
        ):
            return None
        vector = loaded
    if not np.isfinite(vector).all():
        return None
    return vector


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
        self._counters = _Counters()

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
                problem=None if self.cache is None else self.cache.problem(c),
            )

    async def _io(self, count: int, func: Callable[..., _T], *args: Any) -> _T:
        if count >= self.offload_threshold:
            return await asyncio.to_thread(func, *args)
        return func(*args)
