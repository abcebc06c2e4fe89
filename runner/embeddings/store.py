"""Long-term vector memory (issue 6): texts with metadata, recalled by cosine similarity across runs.

On disk a store is a folder of segments (each record writes one new segment pair of vectors and texts) and a
manifest naming them, under a lock file (:mod:`runner.embeddings.store_files`, the format and its checks). The
manifest is the commit point: a reader sees a segment's vectors and texts together or not at all, and a crash
between the steps leaves at most an unreferenced segment and a temporary file, which the next load removes. More
than ``compact_after`` segments are merged into one. Loading and writing hold the lock, and a writer first takes in
the segments other processes added (or their compaction), so two runs recording into one store keep both their
entries.

The store loads on first use (``record`` or ``search``), in a worker thread. If it was written with a
different embedder (another ``cache_key``), its texts are embedded again with the current one and the
store is rewritten: the texts are the memory, the vectors only an index over them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.embedder import Embedder, Vectors
from runner.embeddings.store_files import MANIFEST, Segment, StoreFiles, new_segment
from runner.errors import RunError

__all__ = ["RECALL_TOOL", "Hit", "VectorStore", "format_hits", "recall_tool_spec"]

# Matrices with at least this many floats are searched in a worker thread: a matrix-vector product over
# 2**20 floats takes about 0.3 ms; above that it would hold the event loop (bench/embedding_cache.py).
_OFFLOAD_FLOATS = 1 << 20


@dataclass(frozen=True, slots=True)
class Hit:
    """One recalled entry: its text, cosine similarity to the query (-1 to 1) and metadata."""

    text: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


RECALL_TOOL = "recall"


def recall_tool_spec(top_k: int, name: str = RECALL_TOOL) -> dict[str, Any]:
    """The tool (OpenAI ``tools`` shape) an agent calls to search its long-term memory when
    ``retrieval: tool``; answer a call with :func:`format_hits` of ``store.search(query, top_k)``."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": (
                "Search your long-term memory of earlier runs and turns. Returns up to "
                f"{top_k} remembered notes, most similar to the query first, each with its similarity (0 to 1)."
            ),
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for, in a few words."}},
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    }


def format_hits(hits: Sequence[Hit]) -> str:
    """Recalled entries as text for the model: the context added before a reply (``retrieval: auto``) or
    the answer to a recall tool call."""
    if not hits:
        return "Nothing relevant in long-term memory."
    lines = ["From long-term memory, most similar first:"]
    lines += [f"{i}. ({hit.score:.2f}) {hit.text}" for i, hit in enumerate(hits, 1)]
    return "\n".join(lines)


class VectorStore:
    """Long-term memory in the folder ``path``, embedded by ``embedder``; see the module docstring.

    ``record`` adds texts (skipping texts already stored when ``dedupe``), ``search`` returns the
    ``top_k`` most similar. ``record_later`` schedules a record in the background, off the caller's
    critical path; ``flush`` waits for those and reports their failures, and must be awaited before the
    event loop ends (the engine does it at the end of a run).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        embedder: Embedder,
        *,
        dedupe: bool = True,
        compact_after: int = 16,
    ) -> None:
        self.path = Path(path)
        self._files = StoreFiles(self.path)
        self.embedder = embedder
        self.dedupe = dedupe
        self.compact_after = compact_after
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        # Guards the in-memory state below: persisting runs in a worker thread while searches read it.
        self._state_lock = threading.Lock()
        self._matrix: Vectors = np.empty((0, embedder.dimensions), dtype=np.float32)
        self._count = 0
        self._texts: list[str] = []
        self._metadata: list[dict[str, Any]] = []
        self._known: set[str] = set()
        self._segments: list[Segment] = []
        self._pending: set[asyncio.Task[int]] = set()
        self._errors: list[BaseException] = []

    def __repr__(self) -> str:
        return f"VectorStore({str(self.path)!r}, {self.embedder!r})"

    async def count(self) -> int:
        """How many entries the store holds (loading it if needed)."""
        await self._ensure_loaded()
        return self._count

    async def record(
        self,
        texts: Sequence[str],
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Embed and store ``texts`` durably; return how many were added. ``metadata`` is one JSON-able
        mapping for all texts or one per text."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        metas = _metadata_list(texts, metadata)
        await self._ensure_loaded()
        new_texts: list[str] = []
        new_metas: list[dict[str, Any]] = []
        seen: set[str] = set()
        for text, meta in zip(texts, metas, strict=True):
            if self.dedupe and (text in self._known or text in seen):
                continue
            seen.add(text)
            new_texts.append(text)
            new_metas.append(meta)
        if not new_texts:
            return 0
        vectors = _unit_rows(await self.embedder.embed(new_texts), self.embedder.dimensions)
        async with self._write_lock:
            await asyncio.to_thread(self._persist, new_texts, new_metas, vectors)
        return len(new_texts)

    def record_later(
        self,
        texts: Sequence[str],
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Schedule :meth:`record` in the background (call from a running event loop). Bad arguments
        raise here; failures of the record itself are reported by :meth:`flush`."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        metas = _metadata_list(texts, metadata)
        task = asyncio.get_running_loop().create_task(self.record(list(texts), metas))
        self._pending.add(task)
        task.add_done_callback(self._settle)

    async def flush(self) -> None:
        """Wait for every background record; raise :class:`RunError` if any failed."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._errors:
            errors, self._errors = self._errors, []
            raise RunError(
                f"long-term memory {self.path}: {len(errors)} background record(s) failed; first: {errors[0]}"
            ) from errors[0]

    async def search(self, query: str, top_k: int) -> list[Hit]:
        """The ``top_k`` entries most similar to ``query``, best first. A query that embeds to the zero
        vector (no words, for the hashing embedder) matches nothing."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k}")
        await self._ensure_loaded()
        with self._state_lock:
            matrix = self._matrix[: self._count]
            texts, metadata = self._texts, self._metadata
        if not len(matrix):
            return []
        query_vector = _unit_rows(await self.embedder.embed([query]), self.embedder.dimensions)[0]
        if not query_vector.any():
            return []
        if matrix.size >= _OFFLOAD_FLOATS:
            scores = await asyncio.to_thread(np.matmul, matrix, query_vector)
        else:
            scores = matrix @ query_vector
        k = min(top_k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.lexsort((best, -scores[best]))]  # score descending, then oldest first
        return [Hit(texts[i], float(scores[i]), dict(metadata[i])) for i in best.tolist()]

    # -- loading -----------------------------------------------------------------------------------

    async def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            stale = await asyncio.to_thread(self._load)
            if stale is not None:
                # Written with another embedder: embed the texts again and rewrite the store.
                vectors = _unit_rows(await self.embedder.embed(stale[0]), self.embedder.dimensions)
                async with self._write_lock:
                    await asyncio.to_thread(self._rewrite, stale[0], stale[1], vectors)
            self._loaded = True

    def _load(self) -> tuple[list[str], list[dict[str, Any]]] | None:
        """Read the store into memory; if its vectors are of another embedder, return its texts and
        metadata instead, for :meth:`_ensure_loaded` to embed again."""
        if not self.path.is_dir():
            return None
        with self._files.locked():
            manifest = self._files.read_manifest()
            self._files.sweep(None if manifest is None else manifest.segments)
            if manifest is None:
                return None
            embedder, dimensions, listed = manifest
            if embedder == self.embedder.cache_key and dimensions == self.embedder.dimensions:
                self._load_segments(listed, dimensions)
                return None
            texts: list[str] = []
            metadata: list[dict[str, Any]] = []
            for segment in listed:
                for entry in self._files.read_segment(segment, dimensions)[1]:
                    texts.append(entry["text"])
                    metadata.append(entry["metadata"])
            return texts, metadata

    def _load_segments(self, segments: Sequence[Segment], dimensions: int) -> None:
        with self._state_lock:
            self._reserve(sum(s.rows for s in segments))
        for segment in segments:
            vectors, entries = self._files.read_segment(segment, dimensions)
            with self._state_lock:
                self._append(segment, vectors, entries)

    # -- writing (worker thread, under _write_lock and the file lock) --------------------------------

    def _persist(self, texts: list[str], metas: list[dict[str, Any]], vectors: Vectors) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self._files.locked():
            self._catch_up()
            keep = [i for i, t in enumerate(texts) if not (self.dedupe and t in self._known)]
            if not keep:
                return
            entries = [{"text": texts[i], "metadata": metas[i]} for i in keep]
            vectors = vectors[keep]
            if len(self._segments) + 1 > self.compact_after:
                with self._state_lock:
                    everything = np.concatenate([self._matrix[: self._count], vectors])
                    old_entries = [{"text": t, "metadata": m} for t, m in zip(self._texts, self._metadata, strict=True)]
                self._commit_single(old_entries + entries, everything, old=list(self._segments))
                return
            segment = new_segment(len(entries))
            self._files.write_segment(segment, vectors, entries)
            self._write_manifest([*self._segments, segment])
            with self._state_lock:
                self._append(segment, vectors, entries)

    def _catch_up(self) -> None:
        """Take in what other processes recorded since we loaded (caller holds the file lock)."""
        manifest = self._files.read_manifest()
        if manifest is None:
            if self._segments:
                raise self._files.unreadable(f"{MANIFEST} was removed while this run used the store")
            return
        embedder, dimensions, listed = manifest
        if embedder != self.embedder.cache_key or dimensions != self.embedder.dimensions:
            raise RunError(
                f"long-term memory {self.path}: another run rewrote it for embedder {embedder} "
                f"while this run records with {self.embedder.cache_key}"
            )
        names = {s.name for s in listed}
        mine = {s.name for s in self._segments}
        if not mine <= names:  # another process compacted: our segments are now inside its one
            with self._state_lock:
                self._reset()
            mine = set()
        self._load_segments([s for s in listed if s.name not in mine], dimensions)

    def _rewrite(self, texts: list[str], metas: list[dict[str, Any]], vectors: Vectors) -> None:
        with self._files.locked():
            manifest = self._files.read_manifest()
            old = [] if manifest is None else manifest.segments
            entries = [{"text": t, "metadata": m} for t, m in zip(texts, metas, strict=True)]
            self._commit_single(entries, vectors, old=old)

    def _commit_single(self, entries: list[dict[str, Any]], vectors: Vectors, old: list[Segment]) -> None:
        """Write everything as one segment, point the manifest at it, then delete the ``old`` segments."""
        segment = new_segment(len(entries))
        self._files.write_segment(segment, vectors, entries)
        self._write_manifest([segment])
        with self._state_lock:
            self._reset()
            self._append(segment, vectors, entries)
        self._files.remove(old)

    def _write_manifest(self, segments: list[Segment]) -> None:
        self._files.write_manifest(segments, self.embedder.cache_key, self.embedder.dimensions)

    # -- in-memory state (callers hold _state_lock) --------------------------------------------------

    def _reset(self) -> None:
        self._matrix = np.empty((0, self.embedder.dimensions), dtype=np.float32)
        self._count = 0
        self._texts, self._metadata, self._known, self._segments = [], [], set(), []

    def _reserve(self, rows: int) -> None:
        """Make room for ``rows`` more entries without another copy."""
        if self._count + rows > len(self._matrix):
            grown = np.empty((self._count + rows, self.embedder.dimensions), np.float32)
            grown[: self._count] = self._matrix[: self._count]
            self._matrix = grown

    def _append(self, segment: Segment, vectors: Vectors, entries: list[dict[str, Any]]) -> None:
        # Rows past _count and list items past it are invisible to a search's snapshot, so growing in
        # place is safe; a reset makes new objects and leaves the snapshot alone.
        n = len(vectors)
        if self._count + n > len(self._matrix):
            self._reserve(max(len(self._matrix), n, 64))
        self._matrix[self._count : self._count + n] = vectors
        self._count += n
        self._texts.extend(e["text"] for e in entries)
        self._metadata.extend(e["metadata"] for e in entries)
        self._known.update(e["text"] for e in entries)
        self._segments.append(segment)

    def _settle(self, task: asyncio.Task[int]) -> None:
        self._pending.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._errors.append(error)


def _metadata_list(
    texts: Sequence[str], metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    if metadata is None:
        metas: list[dict[str, Any]] = [{} for _ in texts]
    elif isinstance(metadata, Mapping):
        metas = [dict(metadata) for _ in texts]
    else:
        if len(metadata) != len(texts):
            raise ValueError(f"{len(metadata)} metadata mappings for {len(texts)} texts")
        metas = [dict(m) for m in metadata]
    try:
        json.dumps(metas)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc
    return metas


def _unit_rows(vectors: Vectors, dimensions: int) -> Vectors:
    matrix = np.array(vectors, dtype=np.float32)  # a copy: the caller's array is not changed
    if matrix.ndim != 2 or matrix.shape[1] != dimensions:
        raise RunError(f"the embedder returned shape {matrix.shape}; expected (n, {dimensions})")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix
