"""The folder of a long-term vector store: its manifest, its segments and its lock, read checked and written atomically.

::

    manifest.json          {"format", "version", "embedder", "dimensions", "count", "segments": [...]}
    seg-<id>.npy           float32 (n, dimensions), unit rows
    seg-<id>.json          {"entries": [{"text": ..., "metadata": {...}}, ...]}, same n, same order
    .lock                  serialises readers and writers in several processes (runner.locking.FileLock)

Every file is written to a temporary name, fsynced and renamed into place (:mod:`runner.fsutil`); the manifest is
the commit point, so a reader that follows it sees a segment's vectors and texts together or not at all. What a
killed writer leaves (a temporary file, a segment pair no manifest names) is removed by :meth:`StoreFiles.sweep`
under the lock. Anything unreadable is a :class:`~runner.errors.RunError` that names the folder and says how to
start over; the store (:mod:`runner.embeddings.store`) decides when to read and write.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from runner.embedder import Vectors
from runner.errors import RunError
from runner.fsutil import WriteError, atomic_write_with
from runner.locking import FileLock

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = "runner-vector-store"
VERSION = 1
_SEGMENT_FILE = re.compile(r"^(?P<stem>seg-[0-9a-f]{32})\.(?:npy|json)$")
# Temporary files of the store's own files: runner.fsutil's names, and tempfile's of earlier versions.
_TEMP_FILE = re.compile(r"^\.(?:manifest\.json|seg-[0-9a-f]{32}\.(?:npy|json))\.[^/]+\.tmp$")


class Segment(NamedTuple):
    """A segment pair's file stem and its number of rows."""

    name: str
    rows: int


def new_segment(rows: int) -> Segment:
    return Segment(f"seg-{uuid.uuid4().hex}", rows)


class Manifest(NamedTuple):
    embedder: str  # the cache key of the embedder that made the vectors
    dimensions: int
    segments: list[Segment]


class StoreFiles:
    """The files of the store in the folder ``path``; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock; every reader and writer of the files does."""
        try:
            lock = FileLock(self.path / LOCK)
            lock.acquire()
        except OSError as exc:
            raise WriteError(self.path / LOCK, exc, "lock") from exc
        try:
            yield
        finally:
            lock.release()
            lock.close()

    def unreadable(self, detail: str) -> RunError:
        return RunError(f"long-term memory {self.path}: {detail}. Move the folder aside to start with an empty memory.")

    def read_manifest(self) -> Manifest | None:
        """The manifest; None when there is none."""
        try:
            raw = (self.path / MANIFEST).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.unreadable(f"cannot read {MANIFEST}: {exc}") from exc
        try:
            manifest = json.loads(raw)
            if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} version {VERSION} manifest")
            segments = [Segment(str(s["name"]), int(s["count"])) for s in manifest["segments"]]
            return Manifest(str(manifest["embedder"]), int(manifest["dimensions"]), segments)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.unreadable(f"{MANIFEST} is malformed: {exc}") from exc

    def read_segment(self, segment: Segment, dimensions: int) -> tuple[Vectors, list[dict[str, Any]]]:
        """A segment's vectors (mapped, not read: the caller copies the rows once) and its entries, checked
        against the manifest; each entry has a ``text`` and a ``metadata`` mapping."""
        base = self.path / segment.name
        try:
            vectors = np.load(base.with_suffix(".npy"), mmap_mode="r", allow_pickle=False)
            with base.with_suffix(".json").open(encoding="utf-8") as f:
                entries = json.load(f)["entries"]
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise self.unreadable(f"segment {segment.name} is unreadable: {exc}") from exc
        if vectors.dtype != np.float32 or vectors.shape != (segment.rows, dimensions):
            raise self.unreadable(
                f"segment {segment.name} holds {vectors.dtype} {vectors.shape}; "
                f"the manifest says float32 ({segment.rows}, {dimensions})"
            )
        if not isinstance(entries, list) or len(entries) != segment.rows:
            raise self.unreadable(f"segment {segment.name}: {segment.rows} vectors but not as many entries")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise self.unreadable(f"segment {segment.name}: an entry without text")
            entry.setdefault("metadata", {})
        return vectors, entries

    def write_segment(self, segment: Segment, vectors: Vectors, entries: list[dict[str, Any]]) -> None:
        base = self.path / segment.name
        atomic_write_with(base.with_suffix(".npy"), lambda f: np.save(f, vectors, allow_pickle=False))
        text = json.dumps({"entries": entries}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        atomic_write_with(base.with_suffix(".json"), lambda f: f.write(text))

    def write_manifest(self, segments: Sequence[Segment], embedder: str, dimensions: int) -> None:
        """Point the manifest at ``segments`` (the commit), and make the renames durable."""
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "embedder": embedder,
            "dimensions": dimensions,
            "count": sum(s.rows for s in segments),
            "segments": [{"name": s.name, "count": s.rows} for s in segments],
        }
        text = json.dumps(manifest, indent=1).encode("utf-8")
        atomic_write_with(self.path / MANIFEST, lambda f: f.write(text))
        _fsync_dir(self.path)

    def remove(self, segments: Sequence[Segment]) -> None:
        """Delete segments the manifest no longer names (after a compaction or a rewrite)."""
        for stale in segments:
            for suffix in (".npy", ".json"):
                try:
                    os.unlink(self.path / (stale.name + suffix))
                except FileNotFoundError:
                    pass

    def sweep(self, listed: Sequence[Segment] | None) -> None:
        """Remove what killed writers left: temporary files, and segments the manifest does not list (written,
        then the process died before the manifest that would have named them). Caller holds the lock, and
        every writer writes only while holding it, so nothing here is being written by a live process."""
        names = {s.name for s in listed or ()}
        try:
            entries = [entry.name for entry in os.scandir(self.path)]
        except OSError:
            return
        for name in entries:
            segment = _SEGMENT_FILE.match(name)
            if (segment is not None and segment["stem"] not in names) or _TEMP_FILE.match(name):
                try:
                    os.unlink(self.path / name)
                except OSError:
                    pass  # gone already, or not ours to remove: the store works without this


def _fsync_dir(path: Path) -> None:
    """Make the renames in ``path`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
