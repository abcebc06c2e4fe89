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

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.ledgerdb import Kind, LedgerError, Store, create, open_checked

__all__ = ["FLUSH_EVERY", "FLUSH_ROWS", "LEDGER_NAME", "Ledger", "LedgerError"]

LEDGER_NAME = "ledger.sqlite"
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
KIND = Kind(FORMAT, VERSION, LEDGER_NAME, made_by="runner run --dataset", noun="ledger", what="this batch")

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


class Ledger(Store):
    """The open ledger of one run folder. ``create`` starts one; ``open`` reads an existing one and checks it."""

    flush_rows = FLUSH_ROWS
    flush_every = FLUSH_EVERY

    @classmethod
    def create(cls, folder: Path, settings: dict[str, Any]) -> Ledger:
        return cls(*create(folder, KIND, _SCHEMA, {"settings": json.dumps(settings, sort_keys=True)}))

    @classmethod
    def open(cls, folder: Path) -> Ledger:
        return cls(*open_checked(folder, KIND, {"rows"}))

    @property
    def settings(self) -> dict[str, Any]:
        (value,) = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        settings: dict[str, Any] = json.loads(value)
        return settings

    def update_settings(self, settings: dict[str, Any]) -> None:
        with self._writing():
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (json.dumps(settings, sort_keys=True),))

    def started(self, index: int, key: str) -> None:
        self.queue(_STARTED, (index, key))

    def ended(self, index: int, key: str, ok: bool, error: str | None) -> None:
        state = "done" if ok else "failed"
        self.queue(_ENDED, (index, key, state, error, state, error))

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
