"""Every file runner writes goes through here: atomically, with a user-facing error, and sweepable after a crash.

- **Atomic writes** (:func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_write_with`): the data
  goes to a temporary file in the target's folder, is flushed and fsynced, then ``os.replace``d over the target.
  A reader, or a crash, sees the old complete file or the new complete file, never half of one. On any failure
  the temporary file is removed before the error is raised.
- **Errors name the file and the cause.** An ``OSError`` (disk full, read-only folder, a file where a folder
  should be, a file larger than the process may write) becomes a :class:`WriteError`: a ``RunError``, so the CLI
  prints it as a user-facing error (exit 1), that is also an ``OSError`` with the original ``errno``, so code
  that treats write failures as expected (the embedding cache) still catches it as one.
- **Appends** (:func:`append_whole`) write whole records or nothing: a failed or short append is cut back to the
  size the file had, so a JSONL history never ends in half a line.
- **Temporary files are named for the sweep**: ``.<name>.<pid>-<host>-<n>.tmp``, where ``host`` tags this host
  and PID namespace. :func:`sweep_stale_temps` removes, in a folder runner owns, the ones whose writer is
  provably gone (issue 21: ``kill -9`` left them behind): on this host, a writer whose process no longer exists;
  from another host or container, where its PID cannot be checked, one untouched for an hour.

The lock across processes that the embedding cache and the vector store take is :mod:`runner.locking`.

Tests inject faults through :data:`fault`: when set, it is called with the final path before each write and may
raise an ``OSError`` (the seam for a disk-full error on a machine whose disk is not full).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO

from runner.errors import RunError

__all__ = [
    "WriteError",
    "append_whole",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "ensure_writable_dir",
    "is_temp_name",
    "sweep_stale_temps",
    "sync_files",
]

# A temporary file of another host or PID namespace (whose PID means nothing here) is stale once untouched this long.
FOREIGN_TEMP_SECONDS = 3600.0
_TEMP = re.compile(r"^\..*\.(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{6})-[0-9]+\.tmp$")
# The target's name is kept in the temporary one for a person looking at the folder, cut so the whole name
# stays within the 255 bytes most file systems allow.
_NAME_KEEP = 120
_counter = itertools.count()
_host: str | None = None

fault: Callable[[str], None] | None = None
"""A test seam: called with the final path before every write (with the folder before the probe of
:func:`ensure_writable_dir`); raising an ``OSError`` fails that write."""


class WriteError(RunError, OSError):
    """A file (or the folder for it) could not be written: names the path and the cause, e.g.
    ``could not write reports/wf.json: No space left on device``. Also an ``OSError`` with the cause's errno."""

    def __init__(self, path: str | os.PathLike[str], cause: OSError, action: str = "write") -> None:
        OSError.__init__(self, cause.errno, cause.strerror or str(cause), os.fspath(path))
        self.path = os.fspath(path)
        self.action = action

    def __str__(self) -> str:
        return f"could not {self.action} {self.path}: {self.strerror}"


def _host_tag() -> str:
    """Six hex digits naming this host and PID namespace: PIDs are comparable only between equal tags."""
    global _host
    if _host is None:
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = ""
        node = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
        _host = hashlib.blake2s(f"{node}\0{namespace}".encode(), digest_size=3).hexdigest()
    return _host


_stamp: tuple[int, str] = (0, "")


def _temp_name(name: str) -> str:
    global _stamp
    pid = os.getpid()
    if _stamp[0] != pid:  # first use, or a forked child: the PID changed
        _stamp = (pid, f".{pid}-{_host_tag()}-")
    return f".{name[:_NAME_KEEP]}{_stamp[1]}{next(_counter)}.tmp"


def _split(target: str) -> tuple[str, str]:
    """(folder, name) of a path; ``os.path.split`` without its cost on the hot path of the cache."""
    if os.altsep is None:
        directory, _, name = target.rpartition(os.sep)
        return directory if directory or not target.startswith(os.sep) else os.sep, name
    return os.path.split(target)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temporary files."""
    return _TEMP.match(name) is not None


def _create_temp(directory: str, name: str) -> tuple[int, str]:
    while True:
        tmp = f"{directory}{os.sep}{_temp_name(name)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        except FileExistsError:
            continue  # a dead process with our PID left this name behind: take the next number
        return fd, tmp


def _write_atomically(target: str, fill: Callable[[int], object], fsync: bool, make_parents: bool) -> None:
    """The one atomic writer: ``fill(fd)`` writes a temporary file in the target's folder, which is flushed to
    the device (unless ``fsync`` is false) and renamed over ``target``. Raises :class:`WriteError`; the
    temporary file is gone whatever happens, ``KeyboardInterrupt`` included."""
    directory, name = _split(target)
    directory = directory or "."
    if make_parents:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise WriteError(target, exc) from exc
    tmp = None
    try:
        if fault is not None:
            fault(target)
        fd, tmp = _create_temp(directory, name)
        try:
            fill(fd)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        if isinstance(exc, WriteError):  # raised by a fill that writes other files itself
            raise
        raise WriteError(target, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_with(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    fsync: bool = True,
    make_parents: bool = True,
) -> None:
    """Write through ``write(file)`` (for example ``numpy.save``) to a temporary file, then rename it to ``path``.

    ``fsync=False`` skips the flush to the device (a power cut may then leave an empty or torn file under the
    final name; only for files whose readers check them, like the embedding cache's). Raises
    :class:`WriteError`; the temporary file is gone whatever happens, ``KeyboardInterrupt`` included."""

    def fill(fd: int) -> None:
        with os.fdopen(fd, "wb", closefd=False) as file:  # closing it flushes its buffer into fd
            write(file)

    _write_atomically(os.fspath(path), fill, fsync, make_parents)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, fsync: bool = True, make_parents: bool = True
) -> None:
    """``data`` to ``path`` atomically (see :func:`atomic_write_with`), in as few system calls as it takes."""
    _write_atomically(os.fspath(path), lambda fd: _write_all(fd, data), fsync, make_parents)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, errors: str = "strict", fsync: bool = True) -> None:
    """``text`` as UTF-8 (``errors="surrogatepass"`` keeps lone surrogates) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8", errors), fsync=fsync)


def sync_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """fsync files written earlier with ``fsync=False``, all at once (a file gone since is skipped)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise WriteError(path, exc, "sync") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise WriteError(path, exc, "sync") from exc
        finally:
            os.close(fd)


def append_whole(fd: int, data: bytes, size: int, path: str | os.PathLike[str]) -> int:
    """Append ``data`` to the file open on ``fd`` (``O_APPEND``), whose size is ``size``; return the new size.

    All of it or none: when a write fails part way (disk full), the file is cut back to ``size`` and a
    :class:`WriteError` naming ``path`` is raised, so a file of lines never ends in half a line."""
    try:
        if fault is not None:
            fault(os.fspath(path))
        _write_all(fd, data)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise WriteError(path, exc) from exc
    return size + len(data)


def open_for_appends(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Open (or create) a file of lines for :func:`append_whole`: ``(fd, size)``, the fd in ``O_APPEND`` mode so
    that each write lands whole at the end. Raises :class:`WriteError`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as exc:
        raise WriteError(path, exc, "open") from exc
    try:
        return fd, os.fstat(fd).st_size
    except OSError as exc:
        os.close(fd)
        raise WriteError(path, exc, "open") from exc


def ensure_writable_dir(path: str | os.PathLike[str]) -> None:
    """Create the folder ``path`` if it is missing (with its parents), then prove a file can be created in it.

    Raises :class:`WriteError` saying why not: a file in its place, a missing parent that cannot be made, a
    read-only folder or file system. The proof is a temporary file made and removed at once: permission bits
    say nothing for root, and a read-only mount or an immutable folder stops root too."""
    target = os.fspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise WriteError(target, OSError(errno.ENOTDIR, "it is a file, not a folder"), "use")
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as exc:
        raise WriteError(target, exc, "create the folder") from exc
    try:
        if fault is not None:
            fault(target)
        fd, tmp = _create_temp(target, "probe")
    except OSError as exc:
        raise WriteError(target, exc, "write in") from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _alive(pid: int) -> bool:
    # POSIX only: on Windows os.kill(pid, 0) would terminate the process; there, files go by the age rule.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _stale(name: str, mtime_ns: int, now_ns: int, legacy: re.Pattern[str] | None) -> bool:
    age = (now_ns - mtime_ns) / 1e9
    match = _TEMP.match(name)
    if match is not None:
        if match["host"] != _host_tag() or os.name != "posix":
            return age >= FOREIGN_TEMP_SECONDS
        # A PID of this host and namespace: its writer is gone when no such process exists. No age guard is
        # needed: a dead PID cannot come back to finish the file, and a new process that reused the PID only
        # keeps the file until it exits too.
        pid = int(match["pid"])
        return pid != os.getpid() and not _alive(pid)
    # Names of earlier versions (no PID to check) go by age alone.
    return legacy is not None and legacy.match(name) is not None and age >= FOREIGN_TEMP_SECONDS


def sweep_stale_temps(
    directory: str | os.PathLike[str], *, legacy: re.Pattern[str] | None = None, now_ns: int | None = None
) -> list[str]:
    """Remove the temporary files in ``directory`` whose writer is gone (see the module docstring) and return
    their names. ``legacy`` matches the temporary names of earlier versions, removed after an hour.

    Safe while other processes write in the same folder: a live writer's file is never removed, and two
    sweepers removing the same file is harmless. Never raises: a folder it cannot read is left as it is."""
    now = time.time_ns() if now_ns is None else now_ns
    removed: list[str] = []
    try:
        scanner = os.scandir(directory)
    except OSError:
        return removed
    with scanner:
        for entry in scanner:
            name = entry.name
            if not name.startswith("."):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if not _stale(name, entry.stat(follow_symlinks=False).st_mtime_ns, now, legacy):
                    continue
                os.unlink(entry.path)
            except OSError:
                continue  # gone already (another sweeper), or not ours to remove
            removed.append(name)
    return removed
