"""One entry of the embedding cache on disk: its name, its format, reading it, and the folder's listing.

An entry is ``<dir>/<sha256 of (cache key, text)>.npy``, a version 1.0 ``.npy`` file of one float32 vector. The
header of a vector of ``d`` floats is always the same bytes, so a read is one ``read`` compared against that header
and an ``np.frombuffer``; files with any other header go through ``np.load(allow_pickle=False)`` and are then
checked like the rest. A file that is short, has the wrong header, dtype or shape, has trailing bytes or holds a
non-finite number is corrupt: the cache removes it and embeds the text again, it never raises.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from functools import cache
from typing import NamedTuple

import numpy as np

from runner.embedder import Vectors

SUFFIX = ".npy"
ENTRY_NAME = re.compile(r"^[0-9a-f]{64}\.npy$")
# runner.fsutil's temporary names for entries, and those of earlier versions (.tmp-<key>.<pid>.<thread>.<n>).
TMP_NAME = re.compile(
    r"^\.[0-9a-f]{64}\.npy\.[0-9]+-[0-9a-f]{6}-[0-9]+\.tmp$|^\.tmp-[0-9a-f]{64}\.[0-9]+\.[0-9]+\.[0-9]+$"
)
LEGACY_TMP_NAME = re.compile(r"^\.tmp-[0-9a-f]{64}\.[0-9]+\.[0-9]+\.[0-9]+$")
# Bytes a foreign writer's header may exceed ours by before a file is judged without reading it.
_HEADER_SLACK = 4096
_UTIME_FD = os.utime in os.supports_fd


def entry_key(cache_key: str, text: str) -> str:
    """The file stem for ``text`` embedded by the embedder with ``cache_key`` (provider/model/dimensions)."""
    digest = hashlib.sha256(cache_key.encode("utf-8"))
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def is_cache_file(name: str) -> bool:
    """Whether a file name in a cache folder is one of ours: an entry or a temporary file."""
    return bool(ENTRY_NAME.match(name) or TMP_NAME.match(name))


@cache
def header(dimensions: int) -> bytes:
    """The ``.npy`` header of a vector of ``dimensions`` float32, as this cache writes it."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(dimensions, dtype="<f4"), version=(1, 0))
    return buffer.getvalue()[: -4 * dimensions]


def encode(vector: Vectors) -> bytes:
    """An entry's bytes: the header, then the floats."""
    return header(len(vector)) + np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode(data: bytes, dimensions: int) -> Vectors | None:
    """The vector in a file's bytes, or None when they are not one float32 vector of ``dimensions``."""
    expected = header(dimensions)
    if len(data) == len(expected) + 4 * dimensions and data.startswith(expected):
        vector: Vectors = np.frombuffer(data, dtype="<f4", count=dimensions, offset=len(expected))
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


class Read(NamedTuple):
    """What :func:`read_entry` found: ``status`` is hit, absent, expired or corrupt; ``size`` and
    ``written_ns`` are the file's on a hit (0 otherwise)."""

    vector: Vectors | None
    status: str
    size: int
    written_ns: int


def read_entry(path: str, dimensions: int, now_ns: int, ttl_ns: int | None) -> Read:
    """Read the entry at ``path``; on a hit, set its access time to ``now_ns`` (the last use, which orders
    eviction, also for the next run; the modification time stays the write time, which ``ttl`` counts from)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return Read(None, "absent", 0, 0)
    except OSError:  # a folder in its place, no permission, ...
        return Read(None, "corrupt", 0, 0)
    vector: Vectors | None = None
    try:
        st = os.fstat(fd)
        if ttl_ns is not None and now_ns - st.st_mtime_ns > ttl_ns:
            status = "expired"
        elif st.st_size > len(header(dimensions)) + 4 * dimensions + _HEADER_SLACK:
            status = "corrupt"  # far too big to be one vector: not worth reading
        else:
            data = os.read(fd, st.st_size + 1)
            vector = decode(data, dimensions)
            status = "corrupt" if vector is None else "hit"
        if vector is not None:
            try:
                os.utime(fd if _UTIME_FD else path, ns=(now_ns, st.st_mtime_ns))
            except OSError:
                pass  # a read-only folder: the use order is then kept in memory only
    except OSError:
        vector, status = None, "corrupt"
    finally:
        os.close(fd)  # before any unlink: Windows cannot remove an open file
    if vector is None:
        return Read(None, status, 0, 0)
    return Read(vector, status, len(data), st.st_mtime_ns)


def size_of(path: str) -> int | None:
    """The size of the file at ``path``, or None when there is none."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


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
            if ENTRY_NAME.match(item.name):
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # evicted by another process while we looked
                entries.append(CacheFile(item.name, st.st_size, st.st_mtime_ns, st.st_atime_ns))
            elif TMP_NAME.match(item.name):
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
