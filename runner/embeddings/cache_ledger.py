"""The embedding cache's lock and the counts it keeps, shared by every process using the folder (issue 21).

Four processes on one cache reached 3-4x its limits when each counted only its own files. Now every change to the
entries (a write, an eviction, a removed corrupt entry, ``clear``) happens while holding the lock on ``<dir>/.lock``
(:class:`runner.locking.FileLock`, whose module says what it guarantees on each platform), and the lock file's
first 16 bytes are the ledger: the folder's entry count and their bytes, read and written through the held
descriptor, so a writer knows how full the folder is without listing it. A lock file shorter than that (new, or
cut short) has no ledger: the holder counts the folder and writes one.

The ledger is only as right as the writers that keep it: a process killed part way through a batch leaves it
short, which is why opening a cache counts the folder again under the lock and writes the ledger afresh.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from runner.locking import FileLock

# The ledger in the lock file: the folder's entry count and their bytes.
_LEDGER = struct.Struct("<QQ")


class Ledger:
    """The lock on a cache folder's lock file at ``path``, and the (files, bytes) ledger kept in it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lock = FileLock(path)

    @property
    def is_open(self) -> bool:
        return self._lock.is_open

    def usable(self) -> bool:
        """Whether the lock can be taken at all (not in a read-only folder, nor where locking fails); takes
        and releases it once, leaving the lock file open."""
        try:
            self._lock.acquire()
        except OSError:
            return False
        self._lock.release()
        return True

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block: no other process or thread changes the folder meanwhile."""
        with self._lock:
            yield

    def read(self) -> tuple[int, int] | None:
        """The folder's (files, bytes), or None when the lock file holds no ledger. Caller holds the lock."""
        fd = self._lock.fd
        os.lseek(fd, 0, os.SEEK_SET)  # not pread: Windows has none; the lock is held
        data = os.read(fd, _LEDGER.size)
        if len(data) != _LEDGER.size:
            return None
        files, size = _LEDGER.unpack(data)
        return files, size

    def write(self, files: int, size: int) -> None:
        """Set the ledger (caller holds the lock). A failed write (a full disk) is ignored: the next opening
        of the cache counts the folder again."""
        try:
            os.lseek(self._lock.fd, 0, os.SEEK_SET)
            os.write(self._lock.fd, _LEDGER.pack(max(files, 0), max(size, 0)))
        except OSError:
            pass

    def close(self) -> None:
        """Close the lock file; it is opened again when the lock is next taken."""
        self._lock.close()
