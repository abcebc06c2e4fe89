"""Long-term vector memory: recall by cosine similarity, persistence across runs, background records."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from runner.embedder import Vectors
from runner.embeddings.hashing import HashingEmbedder
from runner.embeddings.store import Hit, VectorStore, format_hits, recall_tool_spec
from runner.embeddings.store_files import MANIFEST
from runner.errors import RunError
from tests.conftest import LOOPS, run_on

FACTS = [
    "uvloop makes the asyncio event loop faster",
    "the cache keeps one npy file per text",
    "cats sleep most of the day",
    "httpx reuses connections from a pool",
]


class TableEmbedder:
    """Vectors looked up in a fixed table (unknown texts: a fixed seed per text); counts calls."""

    def __init__(self, table: dict[str, list[float]], dimensions: int = 3, key: str = "table/t/3") -> None:
        self.table = table
        self._dimensions = dimensions
        self._key = key
        self.calls: list[list[str]] = []

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def cache_key(self) -> str:
        return self._key

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=np.float32).reshape(len(texts), self._dimensions)

    async def aclose(self) -> None:
        return None


class RandomEmbedder:
    """Random unit vectors, the same for the same text in every process."""

    def __init__(self, dimensions: int = 32) -> None:
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def cache_key(self) -> str:
        return f"random/r/{self._dimensions}"

    async def embed(self, texts: Sequence[str]) -> Vectors:
        rows = [np.random.default_rng(list(t.encode())).standard_normal(self._dimensions) for t in texts]
        return np.array(rows, dtype=np.float32).reshape(len(texts), self._dimensions)

    async def aclose(self) -> None:
        return None


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_recall_orders_by_cosine_similarity(tmp_path: Path) -> None:
    table: dict[str, list[float]] = {"a": [1, 0, 0], "b": [1, 1, 0], "c": [0, 0, 5], "d": [-1, 0, 0], "q": [2, 0, 0]}
    store = VectorStore(tmp_path / "mem", TableEmbedder(table))

    async def scenario() -> list[list[Hit]]:
        assert await store.record(["a", "b", "c", "d"], [{"n": i} for i in range(4)]) == 4
        return [await store.search("q", k) for k in (1, 2, 10)]

    top1, top2, everything = asyncio.run(scenario())
    assert top1 == [Hit("a", 1.0, {"n": 0})]
    assert [h.text for h in top2] == ["a", "b"]
    assert top2[1].score == pytest.approx(2**-0.5)
    assert [(h.text, round(h.score, 6)) for h in everything] == [
        ("a", 1.0),
        ("b", 0.707107),
        ("c", 0.0),
        ("d", -1.0),
    ]
    top1[0].metadata["n"] = 99  # type: ignore[index]
    assert asyncio.run(store.search("q", 1))[0].metadata == {"n": 0}  # a hit is a copy


@pytest.mark.parametrize(
    ("loop", "rows", "dims"),
    [(loop, 300, 32) for loop in LOOPS] + [(loop, 1100, 1024) for loop in LOOPS],  # the latter in a thread
)
def test_top_k_matches_a_full_sort(tmp_path: Path, loop: str, rows: int, dims: int) -> None:
    embedder = RandomEmbedder(dims)
    store = VectorStore(tmp_path, embedder)
    texts = [f"note {i}" for i in range(rows)]

    async def scenario() -> list[Hit]:
        await store.record(texts)
        return await store.search("what do we know?", 7)

    hits = run_on(loop, scenario())
    matrix = asyncio.run(embedder.embed(texts))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = asyncio.run(embedder.embed(["what do we know?"]))[0]
    scores = matrix @ (query / np.linalg.norm(query))
    best = np.argsort(-scores, kind="stable")[:7]
    assert [h.text for h in hits] == [texts[i] for i in best]
    assert [h.score for h in hits] == pytest.approx(scores[best].tolist(), abs=1e-6)


def test_the_memory_persists_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "mem"

    async def first_run() -> None:
        store = VectorStore(path, HashingEmbedder(128))
        await store.record(FACTS[:2], {"run": 1})
        await store.record(FACTS[2:], [{"run": 1, "i": 2}, {"run": 1, "i": 3}])

    async def second_run() -> tuple[int, list[Hit]]:
        store = VectorStore(path, HashingEmbedder(128))
        return await store.count(), await store.search("which event loop is faster?", 1)

    asyncio.run(first_run())
    count, hits = asyncio.run(second_run())
    assert count == 4
    assert [(h.text, h.metadata) for h in hits] == [(FACTS[0], {"run": 1})]
    manifest = json.loads((path / MANIFEST).read_text())
    assert (manifest["format"], manifest["embedder"], manifest["dimensions"], manifest["count"]) == (
        "runner-vector-store",
        "hashing/v1/128",
        128,
        4,
    )
    assert [s["count"] for s in manifest["segments"]] == [2, 2]
    # Only the manifest, two segment pairs and the lock file: no temporary file left behind.
    names = files(path)
    assert len(names) == 6 and names[:2] == [".lock", MANIFEST]
    assert all(n.startswith("seg-") for n in names[2:])


def test_loading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    path.mkdir()
    (path / MANIFEST).write_text("{ not json")
    store = VectorStore(path, HashingEmbedder(32))  # does not read anything yet
    with pytest.raises(RunError) as info:
        asyncio.run(store.search("anything", 3))
    assert str(info.value) == (
        f"long-term memory {path}: {MANIFEST} is malformed: Expecting property name enclosed in double "
        "quotes: line 1 column 3 (char 2). Move the folder aside to start with an empty memory."
    )
    assert not (tmp_path / "fresh").exists()
    assert asyncio.run(VectorStore(tmp_path / "fresh", HashingEmbedder(32)).search("x", 3)) == []
    assert not (tmp_path / "fresh").exists()  # searching an empty memory creates nothing


def test_a_damaged_segment_is_reported(tmp_path: Path) -> None:
    asyncio.run(VectorStore(tmp_path, HashingEmbedder(32)).record(FACTS))
    [segment] = [n for n in files(tmp_path) if n.endswith(".npy")]
    np.save(tmp_path / segment, np.zeros((3, 32), np.float32))
    with pytest.raises(RunError) as info:
        asyncio.run(VectorStore(tmp_path, HashingEmbedder(32)).count())
    assert str(info.value) == (
        f"long-term memory {tmp_path}: segment {segment[:-4]} holds float32 (3, 32); the manifest says "
        "float32 (4, 32). Move the folder aside to start with an empty memory."
    )


def test_an_unreferenced_segment_from_a_crash_is_ignored(tmp_path: Path) -> None:
    asyncio.run(VectorStore(tmp_path, HashingEmbedder(32)).record(FACTS[:1]))
    # A crash after writing a segment but before the manifest leaves a pair nobody refers to.
    np.save(tmp_path / "seg-orphan.npy", np.ones((1, 32), np.float32))
    (tmp_path / "seg-orphan.json").write_text('{"entries": [{"text": "half-recorded"}]}')
    store = VectorStore(tmp_path, HashingEmbedder(32))
    assert asyncio.run(store.count()) == 1


def test_duplicates_are_recorded_once(tmp_path: Path) -> None:
    embedder = TableEmbedder({"a": [1, 0, 0], "b": [0, 1, 0]})

    async def scenario() -> tuple[int, int, int]:
        store = VectorStore(tmp_path, embedder)
        added = await store.record(["a", "b", "a"])
        again = await store.record(["b"])
        return added, again, await store.count()

    assert asyncio.run(scenario()) == (2, 0, 2)
    assert embedder.calls == [["a", "b"]]
    assert asyncio.run(VectorStore(tmp_path, embedder, dedupe=False).record(["a"])) == 1


def test_segments_are_compacted(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = VectorStore(tmp_path, HashingEmbedder(32), compact_after=3)
        for fact in FACTS + ["a fifth fact", "a sixth fact"]:
            await store.record([fact])
            segments = json.loads((tmp_path / MANIFEST).read_text())["segments"]
            assert len(segments) <= 3
        assert await store.count() == 6

    asyncio.run(scenario())
    assert len([n for n in files(tmp_path) if n.startswith("seg-")]) == 2 * len(
        json.loads((tmp_path / MANIFEST).read_text())["segments"]
    )  # the merged segments' files were deleted
    store = VectorStore(tmp_path, HashingEmbedder(32))
    assert asyncio.run(store.count()) == 6
    assert [h.text for h in asyncio.run(store.search("a sixth fact", 1))] == ["a sixth fact"]


def test_a_new_embedder_re_embeds_the_texts(tmp_path: Path) -> None:
    asyncio.run(VectorStore(tmp_path, HashingEmbedder(64)).record(FACTS, {"kept": True}))
    store = VectorStore(tmp_path, HashingEmbedder(48))
    hits = asyncio.run(store.search("connection pool", 1))
    assert [(h.text, h.metadata) for h in hits] == [(FACTS[3], {"kept": True})]
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert (manifest["embedder"], manifest["dimensions"], manifest["count"]) == ("hashing/v1/48", 48, 4)
    assert len([n for n in files(tmp_path) if n.endswith(".npy")]) == 1


@pytest.mark.parametrize("loop", LOOPS)
def test_background_records_and_flush(tmp_path: Path, loop: str) -> None:
    async def scenario() -> tuple[int, list[Hit]]:
        store = VectorStore(tmp_path, HashingEmbedder(64))
        for fact in FACTS:
            store.record_later([fact], {"fact": True})
        await store.flush()
        return await store.count(), await store.search("sleeping cats", 1)

    count, hits = run_on(loop, scenario())
    assert count == 4 and hits[0].text == FACTS[2]
    assert asyncio.run(VectorStore(tmp_path, HashingEmbedder(64)).count()) == 4


def test_flush_reports_a_failed_background_record(tmp_path: Path) -> None:
    class Broken(TableEmbedder):
        async def embed(self, texts: Sequence[str]) -> Vectors:
            raise ConnectionError("the embedding server went away")

    async def scenario() -> None:
        store = VectorStore(tmp_path, Broken({}))
        store.record_later(["a"])
        store.record_later(["b"])
        await store.flush()

    with pytest.raises(RunError) as info:
        asyncio.run(scenario())
    assert str(info.value) == (
        f"long-term memory {tmp_path}: 2 background record(s) failed; first: the embedding server went away"
    )
    assert isinstance(info.value.__cause__, ConnectionError)


def test_bad_arguments(tmp_path: Path) -> None:
    store = VectorStore(tmp_path, HashingEmbedder(16))
    with pytest.raises(ValueError) as info:
        asyncio.run(store.record(["a"], {"when": object()}))
    assert str(info.value).startswith("metadata must be JSON-serialisable: Object of type object")
    with pytest.raises(ValueError) as info:
        asyncio.run(store.record(["a", "b"], [{}]))
    assert str(info.value) == "1 metadata mappings for 2 texts"
    with pytest.raises(TypeError):
        asyncio.run(store.record("abc"))

    async def later() -> None:
        with pytest.raises(ValueError) as info:
            store.record_later(["a"], {"when": {1, 2}})
        assert str(info.value) == "metadata must be JSON-serialisable: Object of type set is not JSON serializable"
        await store.flush()

    asyncio.run(later())
    with pytest.raises(ValueError) as info:
        asyncio.run(store.search("a", 0))
    assert str(info.value) == "top_k must be at least 1, not 0"


def test_a_query_without_words_matches_nothing(tmp_path: Path) -> None:
    store = VectorStore(tmp_path, HashingEmbedder(16))

    async def scenario() -> list[Hit]:
        await store.record(FACTS)
        return await store.search("?!", 3)

    assert asyncio.run(scenario()) == []


def _record_in_process(args: tuple[str, int]) -> int:
    path, worker = args

    async def run() -> int:
        store = VectorStore(path, RandomEmbedder(), compact_after=4)
        for i in range(12):
            await store.record([f"worker {worker} fact {i}"], {"worker": worker})
        return await store.count()

    return asyncio.run(run())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers start from a fork server")
def test_two_runs_recording_at_once_keep_both(tmp_path: Path) -> None:
    # forkserver, not fork: a worker of the test run holds threads (xdist's, and those an earlier test left, such as a
    # Ray driver's), and a child forked from a threaded process can deadlock on a lock one of them held (seen in CI)
    context = multiprocessing.get_context("forkserver")
    with context.Pool(3) as pool:
        pool.map_async(_record_in_process, [(str(tmp_path), w) for w in range(3)]).get(timeout=45)
    store = VectorStore(tmp_path, RandomEmbedder())
    assert asyncio.run(store.count()) == 36
    hits = asyncio.run(store.search("worker 2 fact 7", 1))
    assert [(h.text, h.metadata, round(h.score, 5)) for h in hits] == [("worker 2 fact 7", {"worker": 2}, 1.0)]


def test_recall_text_and_tool() -> None:
    hits = [Hit("uvloop is fast", 0.8312), Hit("pools reuse connections", 0.4)]
    assert format_hits(hits) == (
        "From long-term memory, most similar first:\n1. (0.83) uvloop is fast\n2. (0.40) pools reuse connections"
    )
    assert format_hits([]) == "Nothing relevant in long-term memory."
    spec = recall_tool_spec(3)
    assert spec["function"]["name"] == "recall"
    assert spec["function"]["description"] == (
        "Search your long-term memory of earlier runs and turns. Returns up to 3 remembered notes, most "
        "similar to the query first, each with its similarity (0 to 1)."
    )
    assert spec["function"]["parameters"]["required"] == ["query"]
