"""runner.locking.FileLock: what its docstring promises on POSIX, with real processes.

Another process is excluded while the lock is held, gets it the moment it is released, and gets it when the holder
is killed with SIGKILL; threads of one process exclude each other; a child made by ``fork`` (which inherits the
parent's open lock file, and with it the parent's ``flock``) is excluded by the parent's hold instead of sharing
it. Where the file system refuses locks, the cache goes on with the limits of what it knows and the vector store
says it cannot lock its folder.
"""

from __future__ import annotations

import asyncio
import errno
import multiprocessing
import os
import subprocess
import sys
import threading
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
import pytest

from runner import locking
from runner.embeddings.cache_entries import entry_key
from runner.embeddings.cache_folder import EmbeddingCache
from runner.embeddings.hashing import HashingEmbedder
from runner.embeddings.store import VectorStore
from runner.fsutil import WriteError
from runner.locking import FileLock
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(os.name != "posix", reason="flock semantics; the Windows path is msvcrt.locking"),
]

HOLDER = """
import sys
from runner.locking import FileLock

lock = FileLock(sys.argv[1])
print("try", flush=True)
lock.acquire()
print("held", flush=True)
sys.stdin.readline()  # hold until told
lock.release()
print("released", flush=True)
"""


def start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "try\n"
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_another_process_is_excluded_until_release(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = start_holder(path)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        lock = FileLock(path)
        assert lock.acquire(blocking=False) is False
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "released\n"
        assert lock.acquire(blocking=False) is True
        lock.release()
        lock.close()
    finally:
        finish(holder)


def test_a_waiting_process_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    lock = FileLock(path)
    lock.acquire()
    waiter = start_holder(path)  # blocks in acquire: it has said "try" and not "held"
    try:
        lock.release()
        assert waiter.stdout is not None and waiter.stdout.readline() == "held\n"
        assert lock.acquire(blocking=False) is False
    finally:
        finish(waiter)
        lock.close()


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = start_holder(path)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finish(holder)  # SIGKILL while holding
    lock = FileLock(path)
    assert lock.acquire(blocking=False) is True
    lock.release()
    lock.close()


def test_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / ".lock")
    lock.acquire()
    got: list[bool] = []
    other = threading.Thread(target=lambda: got.append(lock.acquire(blocking=False)))
    other.start()
    other.join(timeout=10)
    assert got == [False]
    lock.release()
    lock.close()


def _child_of_an_open_lock(lock: FileLock, held: Event, tried: Event, released: Event) -> None:
    # Exit code 0: excluded while the parent holds the lock, and able to take it once the parent released it.
    if not held.wait(10) or lock.acquire(blocking=False):
        raise SystemExit(1)
    tried.set()
    if not released.wait(10) or not lock.acquire(blocking=False):
        raise SystemExit(2)
    lock.release()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
@pytest.mark.parametrize("held_at_fork", [False, True])
def test_a_forked_child_has_a_lock_of_its_own(tmp_path: Path, held_at_fork: bool) -> None:
    """The inherited descriptor shares the parent's open file, so ``flock`` on it succeeds at once in the child
    while the parent holds the lock (both would change the cache folder together); and a fork while the parent
    holds it must not leave the child's thread lock held for ever."""
    context = multiprocessing.get_context("fork")
    held, tried, released = context.Event(), context.Event(), context.Event()
    lock = FileLock(tmp_path / ".lock")
    lock.acquire()  # opens the lock file: the child inherits the open descriptor
    if not held_at_fork:
        lock.release()
    child = context.Process(target=_child_of_an_open_lock, args=(lock, held, tried, released))
    child.start()
    if not held_at_fork:
        lock.acquire()
    held.set()
    try:
        tried.wait(10)
        lock.release()
        released.set()
        child.join(timeout=20)
        assert child.exitcode == 0
    finally:
        lock.close()


# -- a file system that refuses locks (NFS without a lock daemon: ENOLCK) --------------------------------------


@pytest.fixture
def no_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, blocking: bool, offset: int) -> bool:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(locking, "_lock_file", refuse)


@pytest.mark.usefixtures("no_locks")
def test_without_locks_the_cache_keeps_the_limits_for_what_it_knows(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_file_number=2)
    cache.put_many([(entry_key("k", str(i)), np.ones(4, np.float32)) for i in range(4)])
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == sorted(f"{entry_key('k', str(i))}.npy" for i in (2, 3))
    assert cache.usage() == (2, 2 * (128 + 16))
    assert [v is not None for v in cache.get_many([entry_key("k", "3"), entry_key("k", "0")], 4)] == [True, False]


@pytest.mark.usefixtures("no_locks")
def test_without_locks_the_vector_store_says_it_cannot_lock(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "store", HashingEmbedder(32))
    with pytest.raises(WriteError) as caught:
        asyncio.run(store.record(["a note"]))
    assert str(caught.value) == f"could not lock {tmp_path / 'store' / '.lock'}: No locks available"
