"""An exclusive lock held across processes and threads, on a lock file; what it guarantees on each platform.

The embedding cache and the long-term vector store take it on a ``.lock`` file in their folder. Every writer in
every process takes it before changing the folder, so changes are serialised; a process that does not take it (a
person deleting files) is not stopped.

**Linux, macOS and the BSDs**: ``fcntl.flock(LOCK_EX)`` on the whole lock file. The lock is advisory and
belongs to the open file (the descriptor this object keeps), so:

- a waiter sleeps in the kernel and wakes as soon as the holder releases (no polling);
- the kernel drops it when its process dies, ``kill -9`` included: a lock is never left held by a writer
  that is gone;
- the descriptor is opened non-inheritable, so programs runner starts never hold it; a child made by
  ``fork`` without ``exec`` (``multiprocessing``'s fork start) opens a descriptor of its own on first use,
  so parent and child exclude each other (a shared descriptor would share the lock instead);
- threads of one process: ``flock`` cannot tell them apart on one descriptor, so a thread lock is taken
  first and they wait for each other too.

On network file systems what ``flock`` excludes depends on the client. Linux (2.6.12 and later) sends it to an
NFS server as a lock on the whole file, so processes on other machines are excluded too, but a lock can be lost
when the network or the server fails (an NFSv4 lease that runs out), and a mount with ``local_lock=flock`` (or
``nolock``) excludes only this machine's processes; SMB mounts pass it to the server from Linux 5.5. Where
locking fails outright (``ENOLCK``, ``EOPNOTSUPP``), :meth:`FileLock.acquire` raises the ``OSError``: the cache
then goes on without the shared counts (each process keeps the limits for the entries it knows of), the vector
store reports that it cannot lock its folder. Entries stay whole in every case: that comes from the atomic
rename of :mod:`runner.fsutil`, not from the lock.

**Windows**: ``msvcrt.locking`` on one byte of the lock file (at offset 2**30, far past the few bytes of
state a holder keeps at its start: a locked range cannot be read through other handles). It is tried
without blocking and retried every 10 ms, since ``LK_LOCK`` gives up after ten one-second tries, so a
waiter wakes up to 10 ms after the release. The lock belongs to the handle; Windows releases it when the
handle closes or the process ends, though not necessarily at once after a crash. This path is not exercised
by the tests, which run on Linux.

Why not the ``filelock`` package (compared with 4.3): its ``FileLock`` opens the lock file at each acquire and
closes it at each release, so a holder cannot keep state in it (the cache keeps its folder's counts there, read and
written through the held descriptor), and on Windows it removes the file on release. Its blocking acquire is a
non-blocking try and a sleep of ``poll_interval`` (50 ms by default), where ``flock`` wakes the waiters as soon as
the lock is released. Measured with ``bench/cache_contention.py`` (four processes storing 2,000 vectors each into
one folder in batches of 5, on a shared 2-core machine): with ``flock`` the slowest process took 2.0-3.3 s and no
batch waited more than 50 ms; with the same ``flock`` polled as filelock does (``--lock poll``) the totals were
alike but a waiter kept losing the race, up to 2.3 s for one batch; with filelock's ``FileLock`` (the counts moved
to a second file, a variant not kept) 3.3-6.0 s, with waits up to 2.2 s (under heavier load: worst waits of 0.25 s
with ``flock``, 9 s polled). Alone, a process pays about the same either way (``bench/embedding_cache.py``). On
POSIX filelock rests on the same ``flock`` call, so it would guarantee nothing more.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref

__all__ = ["FileLock"]


class FileLock:
    """An exclusive lock held across processes and threads: ``flock`` on ``path`` (created if missing).

    The lock file stays open from the first :meth:`acquire` until :meth:`close`, so a holder can also keep a
    few bytes of shared state in it (read and written through :attr:`fd` while held). See the module
    docstring for what the lock guarantees on each platform."""

    # Windows locks byte ranges, and a locked range cannot be read through other handles: the lock takes a
    # byte far past the state kept at the start of the file.
    _WINDOWS_LOCK_OFFSET = 1 << 30

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._threads = threading.Lock()
        _instances.add(self)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int:
        assert self._fd is not None, "the lock file is opened by acquire()"
        return self._fd

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False``, return False at once when another holder has it."""
        if not self._threads.acquire(blocking):
            return False
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
            if _lock_file(self._fd, blocking, self._WINDOWS_LOCK_OFFSET):
                return True
        except BaseException:
            self._threads.release()
            raise
        self._threads.release()
        return False

    def release(self) -> None:
        _unlock_file(self.fd, self._WINDOWS_LOCK_OFFSET)
        self._threads.release()

    def close(self) -> None:
        """Close the lock file (not while held)."""
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _forget_parent(self) -> None:
        """In a child made by ``fork``: the inherited descriptor shares the parent's open file, and so its
        ``flock`` (taking it here would succeed while the parent holds it); the thread lock may be a copy held
        by a parent's thread that does not exist here. Closing the copy leaves the parent's lock alone (the
        parent's descriptor still refers to it); the child opens a file of its own on first use."""
        self._threads = threading.Lock()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


_instances: weakref.WeakSet[FileLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in list(_instances):
        lock._forget_parent()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


if sys.platform == "win32":  # pragma: no cover - the tests run on POSIX
    import msvcrt

    def _lock_file(fd: int, blocking: bool, offset: int) -> bool:
        os.lseek(fd, offset, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not blocking:
                    return False
                time.sleep(0.01)

    def _unlock_file(fd: int, offset: int) -> None:
        os.lseek(fd, offset, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int, blocking: bool, offset: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock_file(fd: int, offset: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
