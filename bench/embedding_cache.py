"""Benchmark of the embedding file cache and the long-term vector store (issue 6).

    python bench/embedding_cache.py [--vectors 10000] [--dims 1024] [--stored 100000] [--rounds 3]

Measures, in one run and on the same files:
- store: ``EmbeddingCache.put_many`` against a bare ``np.save`` to a temporary name + ``os.replace``;
- hit: ``EmbeddingCache.get_many`` against a bare ``np.load`` of the same files;
- miss: a lookup that finds nothing, and ``CachedEmbedder.embed`` of new texts with the hashing embedder
  against the bare hashing embedder (so the cache's cost on a cold run shows);
- retrieval: top-5 over ``--stored`` vectors with ``VectorStore.search`` against bare numpy
  (matrix-vector product + argpartition), and the store's lazy load;
- the longest event-loop stall while a batch of hits or a search runs, with and without the worker thread.

Each figure is the median of ``--rounds`` rounds. The bars: a hit costs at most 2x a bare load, a store at
most 2x a bare save-and-rename; the exit status is 1 if either is missed. Everything lives in a temporary
folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.embedder import Vectors  # noqa: E402
from runner.embeddings.cache import CachedEmbedder  # noqa: E402
from runner.embeddings.cache_entries import entry_key  # noqa: E402
from runner.embeddings.cache_folder import EmbeddingCache  # noqa: E402
from runner.embeddings.hashing import HashingEmbedder  # noqa: E402
from runner.embeddings.store import VectorStore  # noqa: E402

BATCH = 100


class RandomEmbedder:
    """Random unit vectors, cheap to make: the store's figures then show the store, not an embedder."""

    def __init__(self, dimensions: int) -> None:
        self._dimensions = dimensions
        self._rng = np.random.default_rng(7)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def cache_key(self) -> str:
        return f"random/bench/{self._dimensions}"

    async def embed(self, texts: Sequence[str]) -> Vectors:
        out = self._rng.standard_normal((len(texts), self._dimensions), dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    async def aclose(self) -> None:
        return None


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def batches(items: Sequence[str], size: int = BATCH) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def longest_stall(work: Callable[[], Awaitable[object]]) -> float:
    """The longest gap between two turns of a ticker task on the loop while ``work`` runs, in seconds."""
    gaps = [0.0]
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await work()
    done = True
    await task
    return max(gaps)


def bench_cache(root: Path, n: int, dims: int, rounds: int) -> tuple[dict[str, float], dict[str, str]]:
    """Per-vector seconds of each operation, the median over rounds."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, dims), dtype=np.float32)
    keys = [entry_key(f"random/bench/{dims}", f"text {i}") for i in range(n)]
    absent = [entry_key(f"random/bench/{dims}", f"absent {i}") for i in range(n)]
    per: dict[str, list[float]] = {}
    extra: dict[str, str] = {}
    for r in range(rounds):
        totals, open_seconds = cache_round(root / f"bare{r}", root / f"cache{r}", vectors, keys, absent, r)
        for name, total in totals.items():
            per.setdefault(name, []).append(total / n)
        extra["open"] = f"{open_seconds * 1e3:.1f} ms to index {n:,} files"
    return {k: statistics.median(v) for k, v in per.items()}, extra


def cache_round(
    bare_dir: Path, cache_dir: Path, vectors: Vectors, keys: list[str], absent: list[str], r: int
) -> tuple[dict[str, float], float]:
    """One round. The bare and the cache variant of an operation run batch by batch in alternation (which
    goes first alternates too), so drift in the file system's speed falls on both alike."""
    dims = vectors.shape[1]
    bare_dir.mkdir()
    cache = EmbeddingCache(cache_dir)
    cache.open()
    totals = dict.fromkeys(("bare_save", "store", "bare_load", "hit", "miss_lookup"), 0.0)
    for b, start in enumerate(range(0, len(keys), BATCH)):
        indices = range(start, min(start + BATCH, len(keys)))

        def bare_save(indices: range = indices) -> None:
            for i in indices:
                tmp = bare_dir / f".tmp-{keys[i]}"
                with open(tmp, "wb") as f:
                    np.save(f, vectors[i], allow_pickle=False)
                os.replace(tmp, bare_dir / f"{keys[i]}.npy")

        def store(indices: range = indices) -> None:
            cache.put_many([(keys[i], vectors[i]) for i in indices])

        pair = [("bare_save", bare_save), ("store", store)]
        for name, func in pair if (b + r) % 2 == 0 else pair[::-1]:
            totals[name] += timed(func)

    reopened = EmbeddingCache(cache_dir)  # as a later run sees it: the index built from the folder
    open_seconds = timed(reopened.open)
    for b, batch in enumerate(batches(keys)):

        def bare_load(batch: Sequence[str] = batch) -> None:
            for k in batch:
                np.load(cache_dir / f"{k}.npy", allow_pickle=False)

        def hit(batch: Sequence[str] = batch) -> None:
            found = reopened.get_many(batch, dims)
            assert all(v is not None for v in found)

        pair = [("bare_load", bare_load), ("hit", hit)]
        for name, func in pair if (b + r) % 2 == 0 else pair[::-1]:
            totals[name] += timed(func)
    for batch in batches(absent):
        totals["miss_lookup"] += timed(lambda batch=batch: reopened.get_many(batch, dims))
    shutil.rmtree(bare_dir)
    shutil.rmtree(cache_dir)
    return totals, open_seconds


async def bench_misses(root: Path, n: int, dims: int) -> tuple[float, float]:
    texts = [f"fact {i}: the quick brown fox jumps over {i * 7} lazy dogs" for i in range(n)]
    bare = HashingEmbedder(dims)
    started = time.perf_counter()
    for batch in batches(texts):
        await bare.embed(batch)
    bare_seconds = time.perf_counter() - started
    cached = CachedEmbedder(HashingEmbedder(dims), EmbeddingCache(root / "miss"))
    started = time.perf_counter()
    for batch in batches(texts):
        await cached.embed(batch)
    cached_seconds = time.perf_counter() - started
    shutil.rmtree(root / "miss")
    return bare_seconds / n, cached_seconds / n


async def bench_stalls(root: Path, dims: int) -> dict[str, float]:
    texts = [f"stall {i}" for i in range(1000)]
    warm = CachedEmbedder(RandomEmbedder(dims), EmbeddingCache(root / "stall"))
    await warm.embed(texts)
    stalls = {}
    for label, threshold in (("inline", 10**9), ("thread", 8)):
        embedder = CachedEmbedder(RandomEmbedder(dims), EmbeddingCache(root / "stall"), offload_threshold=threshold)
        await asyncio.to_thread(embedder.cache.open)  # type: ignore[union-attr]
        stalls[label] = await longest_stall(lambda e=embedder: e.embed(texts))
    shutil.rmtree(root / "stall")
    return stalls


async def bench_store(root: Path, stored: int, dims: int, queries: int = 30) -> dict[str, float]:
    path = root / "store"
    writer = VectorStore(path, RandomEmbedder(dims))
    started = time.perf_counter()
    chunk = 10_000
    for start in range(0, stored, chunk):
        await writer.record([f"entry {i}" for i in range(start, min(start + chunk, stored))])
    record_seconds = time.perf_counter() - started

    reader = VectorStore(path, RandomEmbedder(dims))
    started = time.perf_counter()
    await reader.search("first use loads the store", 5)
    load_seconds = time.perf_counter() - started
    stall = await longest_stall(lambda: reader.search("stall", 5))
    # The store's search and bare numpy on the same matrix, query by query in alternation.
    matrix = reader._matrix[: reader._count]
    embedder = RandomEmbedder(dims)
    latencies, bare = [], []
    for q in range(queries):
        started = time.perf_counter()
        hits = await reader.search(f"query {q}", 5)
        latencies.append(time.perf_counter() - started)
        assert len(hits) == 5
        started = time.perf_counter()
        query = (await embedder.embed([f"query {q}"]))[0]
        scores = matrix @ query
        best = np.argpartition(-scores, 4)[:5]
        best[np.argsort(-scores[best])]
        bare.append(time.perf_counter() - started)
    shutil.rmtree(path)
    return {
        "record": record_seconds,
        "load": load_seconds,
        "search_p50": statistics.median(latencies),
        "search_max": max(latencies),
        "bare_p50": statistics.median(bare),
        "stall": stall,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    n, dims = args.vectors, args.dims

    root = Path(tempfile.mkdtemp(prefix="runner-bench-"))
    try:
        cache, extra = bench_cache(root, n, dims, args.rounds)
        bare_embed, cached_embed = asyncio.run(bench_misses(root, n, dims))
        stalls = asyncio.run(bench_stalls(root, dims))
        store = asyncio.run(bench_store(root, args.stored, dims))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def us(seconds: float) -> str:
        return f"{seconds * 1e6:9.1f} us"

    def rate(seconds: float) -> str:
        return f"{1 / seconds:12,.0f}/s"

    store_ratio = cache["store"] / cache["bare_save"]
    hit_ratio = cache["hit"] / cache["bare_load"]
    print(f"embedding cache: {n:,} vectors of {dims} float32 ({4 * dims:,} B each), median of {args.rounds}")
    print(f"{'operation':<44}{'per vector':>13}{'throughput':>15}{'ratio':>9}")
    rows = [
        ("bare np.save + os.replace", cache["bare_save"], ""),
        ("cache store (put_many, batches of 100)", cache["store"], f"{store_ratio:.2f}x"),
        ("bare np.load", cache["bare_load"], ""),
        ("cache hit (get_many, batches of 100)", cache["hit"], f"{hit_ratio:.2f}x"),
        ("cache miss lookup (no file)", cache["miss_lookup"], ""),
        ("hashing embedder alone (batches of 100)", bare_embed, ""),
        ("miss: CachedEmbedder.embed (embed + store)", cached_embed, f"{cached_embed / bare_embed:.2f}x"),
    ]
    for label, seconds, ratio in rows:
        print(f"{label:<44}{us(seconds):>13}{rate(seconds):>15}{ratio:>9}")
    print(f"index build on open: {extra['open']}")
    print(
        f"longest event-loop stall, 1,000 hits in one batch: inline {stalls['inline'] * 1e3:.1f} ms, "
        f"worker thread {stalls['thread'] * 1e3:.1f} ms"
    )
    print()
    print(f"long-term store: top-5 over {args.stored:,} vectors of {dims} float32")
    print(f"  record {args.stored:,} in batches of 10,000 (fsynced segments): {store['record']:.2f} s")
    print(f"  first search (lazy load from disk + search):     {store['load'] * 1e3:.0f} ms")
    print(
        f"  search p50 {store['search_p50'] * 1e3:.1f} ms (max {store['search_max'] * 1e3:.1f} ms); "
        f"bare numpy p50 {store['bare_p50'] * 1e3:.1f} ms; ratio {store['search_p50'] / store['bare_p50']:.2f}x"
    )
    print(f"  longest event-loop stall during a search: {store['stall'] * 1e3:.1f} ms")
    print()
    ok = store_ratio <= 2 and hit_ratio <= 2
    print(
        f"bars: hit <= 2x bare load: {hit_ratio:.2f}x; store <= 2x bare save+rename: {store_ratio:.2f}x -> "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
