"""What a run folder's SQLite ledgers share: a dataset batch's ``ledger.sqlite`` (:mod:`runner.dataset.ledger`)
and a single run's ``checkpoint.sqlite`` (:mod:`runner.engine.checkpoint`).

SQLite from the standard library in WAL mode (readers never block the writer; a commit is one append to the
log, and ``synchronous=NORMAL`` keeps it durable across a killed process: only a crash of the machine may lose the
last commits, never an earlier one without a later one). Each file says what it is in a ``meta`` table
(``format``, ``version``), so a damaged file, another program's database or a ledger of another kind is a clear
error rather than a wrong resume. The run folder's ``.lock`` is held while a process writes there.

:class:`Store` queues updates and commits them in groups (at most ``flush_rows`` or ``flush_every`` seconds old):
a commit per row or node costs more than a fast row or node does. Transactions commit in order, so whatever a
kill loses is a tail of what was queued, never an update without the ones queued before it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.locking import FileLock

LOCK_NAME = ".lock"


class LedgerError(RunnerError):
    """A ledger that cannot be used: not a runner ledger, damaged, of another version, or of another workflow."""


class Kind:
    """What one kind of ledger says in its messages and meta: its ``format`` and ``version``, what makes the
    folder (``made_by``: ``runner run --dataset``), what a ledger is called (``noun``) and what runs there (``what``:
    ``this batch``)."""

    def __init__(self, fmt: str, version: int, name: str, *, made_by: str, noun: str, what: str) -> None:
        self.format = fmt
        self.version = version
        self.name = name
        self.made_by = made_by
        self.noun = noun
        self.what = what


class Store:
    """An open ledger: its connection, the folder's lock, and the queue of updates committed in groups."""

    flush_rows = 512
    flush_every = 0.5
    noun = "ledger"  # in messages

    def __init__(self, path: Path, db: sqlite3.Connection, lock: FileLock | None = None) -> None:
        self.path = path
        self.db = db
        self.lock = lock
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flushed = time.monotonic()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction; a failure of SQLite (a full disk, a file removed under it) is a located error."""
        try:
            with self.db:
                yield
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: could not update the {self.noun}: {exc}") from exc

    def queue(self, sql: str, args: tuple[Any, ...]) -> None:
        """An update committed with the next group."""
        self._pending.append((sql, args))
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._flushed >= self.flush_every:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Commit the updates queued since the last flush, in one transaction."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        self._write(pending)

    def _write(self, pending: list[tuple[str, tuple[Any, ...]]]) -> None:
        if pending:
            with self._writing():
                start = 0
                for end in range(1, len(pending) + 1):  # runs of one statement go in one executemany
                    if end == len(pending) or pending[end][0] is not pending[start][0]:
                        self.db.executemany(pending[start][0], [args for _, args in pending[start:end]])
                        start = end

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()
            let_go(self.lock)


def create(folder: Path, kind: Kind, schema: str, meta: Mapping[str, str]) -> tuple[Path, sqlite3.Connection, Any]:
    """A new ledger of ``kind`` in ``folder`` (the lock taken): its path, connection and lock."""
    path = folder / kind.name
    lock = hold(folder, kind)
    try:
        db = initialise(path, kind, schema, meta)
    except BaseException:
        let_go(lock)
        raise
    return path, db, lock


def initialise(path: Path, kind: Kind, schema: str, meta: Mapping[str, str]) -> sqlite3.Connection:
    """A new ledger file of ``kind`` at ``path``, its tables made and its meta written (the lock already held)."""
    db = connect(path, noun=kind.noun)
    try:
        with db:
            db.executescript(schema)
            rows = [("format", kind.format), ("version", str(kind.version)), *meta.items()]
            db.executemany("INSERT INTO meta VALUES (?, ?)", rows)
    except sqlite3.Error as exc:
        db.close()
        raise LedgerError(f"{path}: cannot create the {kind.noun}: {exc}") from None
    return db


def open_checked(folder: Path, kind: Kind, tables: set[str]) -> tuple[Path, sqlite3.Connection, Any]:
    """The existing ledger of ``kind`` in ``folder``, checked to be one (its ``tables`` there, its format and
    version), the lock taken: its path, connection and lock."""
    path = folder / kind.name
    if not folder.is_dir():
        raise LedgerError(f"--resume {folder}: no such run folder (a folder `{kind.made_by}` made)")
    if not path.is_file():
        raise LedgerError(f"--resume {folder}: no {kind.name} in it; resume a folder that `{kind.made_by}` made")
    lock = hold(folder, kind)
    try:
        db = connect(path, create=False, noun=kind.noun)
        check(path, db, kind, tables)
    except BaseException:
        let_go(lock)
        raise
    return path, db, lock


def check(path: Path, db: sqlite3.Connection, kind: Kind, tables: set[str]) -> None:
    """Refuse (and close) a database that is not a ledger of ``kind`` at this version."""
    noun = kind.noun
    try:
        found = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        meta = dict(db.execute("SELECT key, value FROM meta")) if {"meta", *tables} <= found else {}
    except sqlite3.Error as exc:
        db.close()
        raise LedgerError(f"{path}: not a runner {noun} ({exc}); the file is damaged or is another file") from None
    if meta.get("format") != kind.format:
        db.close()
        raise LedgerError(f"{path}: not a runner {noun} (an SQLite database of something else); leave it alone")
    if meta.get("version") != str(kind.version):
        db.close()
        raise LedgerError(
            f"{path}: a {noun} of version {meta.get('version')}, which this runner (version {kind.version}) cannot "
            f"resume; run the {kind.what.split()[-1]} again in a new folder"
        )


def hold(folder: Path, kind: Kind) -> FileLock | None:
    """The run folder's lock, held while a process runs there: two processes writing one run folder would run
    its work twice. None where the file system cannot lock (the run goes on, unguarded)."""
    lock = FileLock(folder / LOCK_NAME)
    try:
        taken = lock.acquire(blocking=False)
    except OSError:
        lock.close()
        return None
    if not taken:
        lock.close()
        raise LedgerError(
            f"{folder}: another runner is running {kind.what} now; let it finish (or stop it), then resume"
        )
    return lock


def let_go(lock: FileLock | None) -> None:
    if lock is not None:
        lock.release()
        lock.close()


def connect(path: Path, *, create: bool = True, noun: str = "ledger") -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=NORMAL``; a file SQLite cannot read is a :class:`LedgerError`."""
    try:
        uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: not a runner {noun} ({exc}); the file is damaged or is another file") from None
    return db
