"""The batch's ledger: ``<run folder>/ledger.sqlite``, each row's state and attempts, and what the batch ran.

SQLite from the standard library in WAL mode (readers never block the writer; a commit is one append to the
log, and ``synchronous=NORMAL`` keeps it durable across a killed process). It records the workflow's hash and
the batch's settings (dataset, ``--map``, ``--key``, ``--keep``, ``--limit``, ``--shard``), so ``--resume``
runs the same batch and refuses an edited workflow unless ``--force``.

What is done is decided by ``results.jsonl`` (:mod:`runner.dataset.results`), not by the ledger: a row's line
is written before its ledger entry says done, and a resume first marks done every row whose line is there.
A process killed between the two therefore neither loses the row nor writes it twice. Row updates are committed
in groups (:data:`FLUSH_ROWS`, :data:`FLUSH_EVERY`) for the same reason.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.locking import FileLock

LEDGER_NAME = "ledger.sqlite"
LOCK_NAME = ".lock"
# Row updates are committed together, at most this many or this old: a commit per row cost more than the rows of
# a fast workflow (140 us of a row's 600 us, bench/dataset.py). What a kill loses of them is found again in
# results.jsonl (which rows ended, and how); only the attempt counts of the rows then in flight may be short.
FLUSH_ROWS = 512
FLUSH_EVERY = 0.5
_STARTED = (
    "INSERT INTO rows VALUES (?, ?, 'running', 1, NULL) "
    "ON CONFLICT (idx) DO UPDATE SET state = 'running', attempts = attempts + 1"
)
_ENDED = "INSERT INTO rows VALUES (?, ?, ?, 1, ?) ON CONFLICT (idx) DO UPDATE SET state = ?, error = ?"
FORMAT = "runner-dataset-ledger"
VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    idx INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    attempts INTEGER NOT NULL,
    error TEXT
);
"""


class LedgerError(RunnerError):
    """A ledger that cannot be used: not a runner ledger, damaged, of another version, or of another workflow."""


class Ledger:
    """The open ledger of one run folder. ``create`` starts one; ``open`` reads an existing one and checks it."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock: FileLock | None = None) -> None:
        self.path = path
        self.db = db
        self.lock = lock
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flushed = time.monotonic()

    @classmethod
    def create(cls, folder: Path, settings: dict[str, Any]) -> Ledger:
        path = folder / LEDGER_NAME
        lock = _hold(folder)
        try:
            db = _connect(path)
        except BaseException:
            _let_go(lock)
            raise
        try:
            with db:
                db.executescript(_SCHEMA)
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", FORMAT), ("version", str(VERSION)), ("settings", json.dumps(settings, sort_keys=True))],
                )
        except sqlite3.Error as exc:
            db.close()
            _let_go(lock)
            raise LedgerError(f"{path}: cannot create the ledger: {exc}") from None
        return cls(path, db, lock)

    @classmethod
    def open(cls, folder: Path) -> Ledger:
        path = folder / LEDGER_NAME
        if not folder.is_dir():
            raise LedgerError(f"--resume {folder}: no such run folder (a folder `runner run --dataset` made)")
        if not path.is_file():
            raise LedgerError(
                f"--resume {folder}: no {LEDGER_NAME} in it; resume a folder that `runner run --dataset` made"
            )
        lock = _hold(folder)
        try:
            return cls._checked(path, _connect(path, create=False), lock)
        except BaseException:
            _let_go(lock)
            raise

    @classmethod
    def _checked(cls, path: Path, db: sqlite3.Connection, lock: FileLock | None) -> Ledger:
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = dict(db.execute("SELECT key, value FROM meta")) if {"meta", "rows"} <= tables else {}
        except sqlite3.Error as exc:
            db.close()
            raise LedgerError(f"{path}: not a runner ledger ({exc}); the file is damaged or is another file") from None
        if meta.get("format") != FORMAT:
            db.close()
            raise LedgerError(f"{path}: not a runner ledger (an SQLite database of something else); leave it alone")
        if meta.get("version") != str(VERSION):
            db.close()
            raise LedgerError(
                f"{path}: a ledger of version {meta.get('version')}, which this runner (version {VERSION}) cannot "
                "resume; run the batch again in a new folder"
            )
        return cls(path, db, lock)

    @property
    def settings(self) -> dict[str, Any]:
        (value,) = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        settings: dict[str, Any] = json.loads(value)
        return settings

    def update_settings(self, settings: dict[str, Any]) -> None:
        with self._writing():
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(settings, sort_keys=True),))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction; a failure of SQLite (a full disk, a file removed under it) is a located error."""
        try:
            with self.db:
                yield
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: could not update the ledger: {exc}") from exc

    def started(self, index: int, key: str) -> None:
        self._pending.append((_STARTED, (index, key)))
        self._maybe_flush()

    def ended(self, index: int, key: str, ok: bool, error: str | None) -> None:
        state = "done" if ok else "failed"
        self._pending.append((_ENDED, (index, key, state, error, state, error)))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self._pending) >= FLUSH_ROWS or time.monotonic() - self._flushed >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit the row updates recorded since the last flush, in one transaction."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        if pending:
            with self._writing():
                for sql, args in pending:
                    self.db.execute(sql, args)

    def reconcile(self, written: Iterable[tuple[int, str, bool, str | None]]) -> None:
        """Mark every row whose line ``results.jsonl`` holds as it says (index, key, ok, error); rows marked
        running with no line are left to run again."""
        with self._writing():
            self.db.executemany(
                "INSERT INTO rows VALUES (?, ?, ?, 1, ?) ON CONFLICT (idx) DO UPDATE SET state = excluded.state, "
                "error = excluded.error",
                ((i, key, "done" if ok else "failed", error) for i, key, ok, error in written),
            )

    def reopen_failed(self) -> None:
        """``--retry-errors``: failed rows are to run again."""
        with self._writing():
            self.db.execute("UPDATE rows SET state = 'running' WHERE state = 'failed'")

    def finished(self) -> set[int]:
        """The rows that are done or failed: the ones a resume skips."""
        return {i for (i,) in self.db.execute("SELECT idx FROM rows WHERE state != 'running'")}

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()
            _let_go(self.lock)


def _hold(folder: Path) -> FileLock | None:
    """The run folder's lock, held while a batch runs there: two processes appending to one results.jsonl would
    run rows twice. None where the file system cannot lock (the batch goes on, unguarded)."""
    lock = FileLock(folder / LOCK_NAME)
    try:
        taken = lock.acquire(blocking=False)
    except OSError:
        lock.close()
        return None
    if not taken:
        lock.close()
        raise LedgerError(
            f"{folder}: another runner is running this batch now; let it finish (or stop it), then resume"
        )
    return lock


def _let_go(lock: FileLock | None) -> None:
    if lock is not None:
        lock.release()
        lock.close()


def _connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    try:
        uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: not a runner ledger ({exc}); the file is damaged or is another file") from None
    return db
