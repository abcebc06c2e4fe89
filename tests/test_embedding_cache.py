"""The file cache of embeddings: limits, eviction order, TTL, corrupt files, processes, partial hits."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from runner.commands.cache import cache_command, format_bytes
from runner.config.embeddings import parse_size
from runner.embedder import Vectors
from runner.embeddings import cache_folder
from runner.embeddings.cache import CachedEmbedder
from runner.embeddings.cache_entries import entry_key, is_cache_file, scan_cache_dir
from runner.embeddings.cache_folder import EmbeddingCache
from runner.embeddings.cache_stats import Counters
from runner.embeddings.hashing import HashingEmbedder
from runner.errors import ProviderProtocolError
from tests.conftest import LOOPS, run_on

DIMS = 16
# A version 1.0 .npy header is padded to 128 bytes for a small 1-d float32 array.
ENTRY_BYTES = 128 + 4 * DIMS


class CountingEmbedder:
    """Deterministic vectors (the hashing embedder's) and a log of every batch asked for."""

    def __init__(self, dimensions: int = DIMS) -> None:
        self._inner = HashingEmbedder(dimensions)
        self.calls: list[list[str]] = []

    @property
    def dimensions(self) -> int:
        return self._inner.dimensions

    @property
    def cache_key(self) -> str:
        return self._inner.cache_key

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return self._inner.embed_sync(texts)

    async def aclose(self) -> None:
        return None


def vec(seed: int, dims: int = DIMS) -> Vectors:
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


def names(directory: Path) -> list[str]:
    """The files in a cache folder, but for its lock file (which holds the folder's counts, issue 21)."""
    return sorted(p.name for p in directory.iterdir() if p.name != cache_folder.LOCK)


def key(i: int) -> str:
    return entry_key("test/m/16", f"text {i}")


# -- sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("2B", 2),
        ("10 kb", 10_000),
        ("256MB", 256_000_000),
        ("1KiB", 1024),
        ("1.5GiB", 1_610_612_736),
        ("2TB", 2_000_000_000_000),
        (" 3 MiB ", 3 * 1024 * 1024),
    ],
)
def test_parse_size(raw: int | str, expected: int) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "12 parsecs",
            "'12 parsecs' is not a size: use bytes (4096) or a number with a unit "
            "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), such as '256MB' or '1.5GiB'",
        ),
        (
            "MB",
            "'MB' is not a size: use bytes (4096) or a number with a unit "
            "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), such as '256MB' or '1.5GiB'",
        ),
        (0, "a size must be at least 1 byte, not 0"),
        ("0.1B", "a size must be at least 1 byte, not '0.1B'"),
        (-5, "a size must be at least 1 byte, not -5"),
        (True, "a size must be an integer or a string such as '256MB', not True"),
        (1.5, "a size must be an integer or a string such as '256MB', not 1.5"),
    ],
)
def test_parse_size_rejects(raw: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(raw)  # type: ignore[arg-type]
    assert str(info.value) == message


# -- the cache on its own ---------------------------------------------------------------------------


def test_round_trip_is_exact_and_files_are_plain_npy(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many([(key(1), vec(1))])
    [found] = cache.get_many([key(1)], DIMS)
    assert found is not None and found.dtype == np.float32
    assert found.tobytes() == vec(1).tobytes()
    # The file is an ordinary .npy any numpy reads without pickle.
    loaded = np.load(tmp_path / f"{key(1)}.npy", allow_pickle=False)
    assert loaded.tobytes() == vec(1).tobytes()
    assert os.path.getsize(tmp_path / f"{key(1)}.npy") == ENTRY_BYTES
    assert names(tmp_path) == [f"{key(1)}.npy"]  # no temporary file left behind


def test_eviction_by_count_keeps_the_newest(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_file_number=3)
    for i in range(5):
        cache.put_many([(key(i), vec(i))])
        assert len(names(tmp_path)) <= 3  # the limit holds after every write
    assert names(tmp_path) == sorted(f"{key(i)}.npy" for i in (2, 3, 4))
    assert cache.usage() == (3, 3 * ENTRY_BYTES)


def test_eviction_by_size(tmp_path: Path) -> None:
    # Room for two entries and a half: the third write evicts the first.
    cache = EmbeddingCache(tmp_path, max_cache_size=f"{ENTRY_BYTES * 5 // 2}B")
    for i in range(4):
        cache.put_many([(key(i), vec(i))])
        assert sum((tmp_path / name).stat().st_size for name in names(tmp_path)) <= ENTRY_BYTES * 5 // 2
    assert names(tmp_path) == sorted(f"{key(i)}.npy" for i in (2, 3))
    assert cache.usage() == (2, 2 * ENTRY_BYTES)


def test_an_entry_larger_than_the_cache_is_not_stored(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_cache_size=ENTRY_BYTES)
    cache.put_many([(key(1), vec(1))])
    cache.put_many([(key(2), vec(2, dims=DIMS + 1))])
    assert names(tmp_path) == [f"{key(1)}.npy"]


def test_hits_keep_entries_alive(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_file_number=3)
    cache.put_many([(key(i), vec(i)) for i in range(3)])
    assert cache.get_many([key(0)], DIMS)[0] is not None  # 0 is now the most recently used
    cache.put_many([(key(3), vec(3))])
    assert names(tmp_path) == sorted(f"{key(i)}.npy" for i in (0, 2, 3))


def test_use_order_survives_a_new_process(tmp_path: Path) -> None:
    first = EmbeddingCache(tmp_path)
    first.put_many([(key(i), vec(i)) for i in range(3)])
    # Age the files so their order is not down to the file system's timestamp granularity.
    old = time.time_ns() - 60 * 10**9
    for i in range(3):
        os.utime(tmp_path / f"{key(i)}.npy", ns=(old + i * 10**9, old + i * 10**9))
    second = EmbeddingCache(tmp_path)  # a later run
    assert second.get_many([key(0)], DIMS)[0] is not None
    third = EmbeddingCache(tmp_path, max_file_number=3)  # and another
    third.put_many([(key(3), vec(3))])
    assert names(tmp_path) == sorted(f"{key(i)}.npy" for i in (0, 2, 3))


def test_opening_brings_an_oversized_folder_within_the_limits(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).put_many([(key(i), vec(i)) for i in range(5)])
    old = time.time_ns() - 60 * 10**9
    for i in range(5):
        os.utime(tmp_path / f"{key(i)}.npy", ns=(old + i * 10**9, old + i * 10**9))
    cache = EmbeddingCache(tmp_path, max_file_number=2)
    assert cache.usage() == (2, 2 * ENTRY_BYTES)
    assert names(tmp_path) == sorted(f"{key(i)}.npy" for i in (3, 4))


def test_size_accounting_is_incremental(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[object] = []
    real_scan = cache_folder.scan_cache_dir

    def counting_scan(directory: str | os.PathLike[str]) -> object:
        scans.append(directory)
        return real_scan(directory)

    monkeypatch.setattr(cache_folder, "scan_cache_dir", counting_scan)
    cache = EmbeddingCache(tmp_path, max_file_number=5, max_cache_size=10 * ENTRY_BYTES)
    for i in range(20):
        cache.put_many([(key(i), vec(i))])
        cache.get_many([key(i), key(i - 1)], DIMS)
    assert len(scans) == 1  # the index was built once, on first use
    assert cache.usage() == (5, 5 * ENTRY_BYTES)


def test_ttl_counts_from_the_write_and_hits_do_not_extend_it(tmp_path: Path) -> None:
    offset = [0]

    def clock() -> int:
        return time.time_ns() + offset[0]

    cache = EmbeddingCache(tmp_path, ttl=10, clock=clock)
    embedder = CachedEmbedder(CountingEmbedder(), cache)
    asyncio.run(embedder.embed(["fact"]))
    offset[0] = 6 * 10**9
    asyncio.run(embedder.embed(["fact"]))  # a hit at 6 s
    offset[0] = 11 * 10**9
    asyncio.run(embedder.embed(["fact"]))  # expired at 11 s: embedded and stored again
    stats = embedder.stats()
    assert (stats.hits, stats.misses, stats.expired, stats.texts_embedded) == (1, 2, 1, 2)
    assert len(names(tmp_path)) == 1


def test_expired_entries_are_dropped_on_open(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).put_many([(key(1), vec(1)), (key(2), vec(2))])
    old = time.time_ns() - 100 * 10**9
    os.utime(tmp_path / f"{key(1)}.npy", ns=(old, old))
    cache = EmbeddingCache(tmp_path, ttl=50)
    assert cache.usage() == (1, ENTRY_BYTES)
    assert names(tmp_path) == [f"{key(2)}.npy"]


def _write_bad(path: Path, kind: str) -> None:
    good = io.BytesIO()
    np.save(good, vec(7), allow_pickle=False)
    data = good.getvalue()
    if kind == "truncated":
        path.write_bytes(data[: len(data) - 5])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x93NUMPY but not really" * 3)
    elif kind == "too long":
        path.write_bytes(data + b"\0\0\0\0")
    elif kind == "wrong shape":
        np.save(path, vec(7, dims=DIMS + 1), allow_pickle=False)
    elif kind == "two rows":
        np.save(path, np.zeros((2, DIMS), np.float32), allow_pickle=False)
    elif kind == "float64":
        np.save(path, vec(7).astype(np.float64), allow_pickle=False)
    elif kind == "pickled":
        np.save(path, np.array([{"a": 1}] * DIMS, dtype=object), allow_pickle=True)
    elif kind == "nan":
        bad = vec(7)
        bad[3] = np.nan
        np.save(path, bad, allow_pickle=False)
    elif kind == "huge":
        path.write_bytes(data + b"\0" * 10_000)
    elif kind == "folder":
        path.mkdir()
    else:
        raise AssertionError(kind)


BAD_KINDS = [
    "truncated",
    "empty",
    "garbage",
    "too long",
    "wrong shape",
    "two rows",
    "float64",
    "pickled",
    "nan",
    "huge",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_file_is_a_counted_miss_and_is_replaced(tmp_path: Path, kind: str) -> None:
    inner = CountingEmbedder()
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path))
    path = tmp_path / f"{entry_key(inner.cache_key, 'fact')}.npy"
    _write_bad(path, kind)
    first = asyncio.run(embedder.embed(["fact"]))
    assert first.tobytes() == HashingEmbedder(DIMS).embed_sync(["fact"]).tobytes()
    stats = embedder.stats()
    assert (stats.hits, stats.misses, stats.corrupt, stats.texts_embedded) == (0, 1, 1, 1)
    # The bad file was replaced by a good one: the next lookup is a hit.
    assert np.load(path, allow_pickle=False).tobytes() == first[0].tobytes()
    asyncio.run(embedder.embed(["fact"]))
    assert embedder.stats().hits == 1


def test_a_folder_in_place_of_an_entry_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.open()
    _write_bad(tmp_path / f"{key(1)}.npy", "folder")
    counters = Counters()
    assert cache.get_many([key(1)], DIMS, counters) == [None]
    assert (counters.misses, counters.corrupt) == (1, 1)


def test_a_file_with_another_header_layout_is_still_a_hit(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.open()
    with open(tmp_path / f"{key(1)}.npy", "wb") as f:  # version 2.0 header: the np.load path
        np.lib.format.write_array(f, vec(1), version=(2, 0))
    [found] = cache.get_many([key(1)], DIMS)
    assert found is not None and found.tobytes() == vec(1).tobytes()


def test_a_failed_write_is_counted_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cache = EmbeddingCache(folder)
    cache.open()
    shutil.rmtree(folder)
    folder.write_text("not a folder any more")
    counters = Counters()
    cache.put_many([(key(1), vec(1))], counters)
    assert (counters.write_errors, counters.bytes_written) == (1, 0)
    assert cache.get_many([key(1)], DIMS, counters) == [None]


def test_an_unusable_folder_means_no_cache_not_a_crash(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    inner = CountingEmbedder()
    embedder = CachedEmbedder(inner, EmbeddingCache(blocked))
    asyncio.run(embedder.embed(["a", "b"]))
    asyncio.run(embedder.embed(["a"]))
    assert inner.calls == [["a", "b"], ["a"]]
    stats = embedder.stats()
    assert (stats.hits, stats.misses, stats.write_errors, stats.files) == (0, 3, 3, 0)
    assert embedder.cache is not None and embedder.cache.open_error == f"{blocked}: it is a file, not a folder"


# -- the cached embedder ----------------------------------------------------------------------------


@pytest.mark.parametrize(("loop", "offload"), [(loop, offload) for loop in LOOPS for offload in (1, 100)])
def test_a_batch_is_served_partly_from_cache(tmp_path: Path, loop: str, offload: int) -> None:
    inner = CountingEmbedder()
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path), offload_threshold=offload)
    run_on(loop, embedder.embed(["alpha", "beta"]))
    texts = ["beta", "gamma", "alpha", "delta", "gamma"]
    got = run_on(loop, embedder.embed(texts))
    assert inner.calls == [["alpha", "beta"], ["gamma", "delta"]]  # only the misses, each once
    assert got.shape == (5, DIMS) and got.dtype == np.float32
    assert got.tobytes() == HashingEmbedder(DIMS).embed_sync(texts).tobytes()
    stats = embedder.stats()
    assert (stats.hits, stats.misses, stats.texts_embedded, stats.embed_calls) == (2, 5, 4, 2)
    assert (stats.files, stats.cache_bytes) == (4, 4 * ENTRY_BYTES)
    assert (stats.bytes_read, stats.bytes_written) == (2 * ENTRY_BYTES, 4 * ENTRY_BYTES)
    assert stats.embed_seconds > 0 and stats.cache_io_seconds > 0


def test_an_all_hit_batch_does_not_call_the_embedder(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path))
    asyncio.run(embedder.embed(["a", "b", "c"]))
    asyncio.run(embedder.embed(["c", "a"]))
    assert inner.calls == [["a", "b", "c"]]
    assert asyncio.run(embedder.embed([])).shape == (0, DIMS)


def test_stats_snapshot(tmp_path: Path) -> None:
    embedder = CachedEmbedder(CountingEmbedder(), EmbeddingCache(tmp_path, max_file_number=1))
    asyncio.run(embedder.embed(["a", "b"]))
    snapshot = embedder.stats()
    with pytest.raises(AttributeError):
        snapshot.hits = 3  # type: ignore[misc]
    data = snapshot.as_dict()
    assert list(data) == [
        "embedder", "hits", "misses", "evictions", "expired", "corrupt", "write_errors", "bytes_read",
        "bytes_written", "cache_io_seconds", "embed_seconds", "embed_calls", "texts_embedded", "files",
        "cache_bytes", "dir", "problem",
    ]  # fmt: skip
    assert {k: v for k, v in data.items() if not k.endswith("seconds")} == {
        "embedder": "hashing/v1/16",
        "hits": 0,
        "misses": 2,
        "evictions": 1,
        "expired": 0,
        "corrupt": 0,
        "write_errors": 0,
        "bytes_read": 0,
        "bytes_written": 2 * ENTRY_BYTES,
        "embed_calls": 1,
        "texts_embedded": 2,
        "files": 1,
        "cache_bytes": ENTRY_BYTES,
        "dir": str(tmp_path),
        "problem": None,
    }
    asyncio.run(embedder.embed(["b"]))
    assert snapshot.hits == 0 and embedder.stats().hits == 1  # a snapshot does not move


def test_without_a_cache_it_only_measures() -> None:
    inner = CountingEmbedder()
    embedder = CachedEmbedder(inner, None)
    asyncio.run(embedder.embed(["a", "a", "b"]))
    asyncio.run(embedder.embed(["a"]))
    assert inner.calls == [["a", "b"], ["a"]]
    stats = embedder.stats()
    assert (stats.hits, stats.misses, stats.texts_embedded, stats.files) == (0, 4, 3, 0)


def test_a_wrong_shape_from_the_embedder_is_a_protocol_error(tmp_path: Path) -> None:
    class Short(CountingEmbedder):
        async def embed(self, texts: Sequence[str]) -> Vectors:
            return np.zeros((len(texts), DIMS - 1), np.float32)

    embedder = CachedEmbedder(Short(), EmbeddingCache(tmp_path))
    with pytest.raises(ProviderProtocolError) as info:
        asyncio.run(embedder.embed(["a", "b"]))
    assert str(info.value) == (
        "embedder hashing/v1/16 returned an array of shape (2, 15) for 2 texts; expected (2, 16)"
    )
    assert names(tmp_path) == []


def test_large_batches_do_their_file_io_off_the_event_loop(tmp_path: Path) -> None:
    threads: list[tuple[str, bool]] = []

    class Watched(EmbeddingCache):
        def get_many(self, *args: object, **kwargs: object) -> list[Vectors | None]:
            threads.append(("get", threading.current_thread() is threading.main_thread()))
            return super().get_many(*args, **kwargs)  # type: ignore[arg-type]

        def put_many(self, *args: object, **kwargs: object) -> None:
            threads.append(("put", threading.current_thread() is threading.main_thread()))
            super().put_many(*args, **kwargs)  # type: ignore[arg-type]

    embedder = CachedEmbedder(CountingEmbedder(), Watched(tmp_path), offload_threshold=4)
    asyncio.run(embedder.embed(["a", "b"]))
    asyncio.run(embedder.embed([f"t{i}" for i in range(4)]))
    assert threads == [("get", True), ("put", True), ("get", False), ("put", False)]


# -- several processes ------------------------------------------------------------------------------


def _expected(k: str) -> Vectors:
    return vec(int(k[:8], 16))


def _hammer(args: tuple[str, int, int]) -> tuple[int, int, int, int]:
    """Store and read 40 shared keys in a random order for a while; report what was seen."""
    directory, seed, rounds = args
    rng = np.random.default_rng(seed)
    cache = EmbeddingCache(directory, max_file_number=25)
    counters = Counters()
    keys = [key(i) for i in range(40)]
    wrong = 0
    for _ in range(rounds):
        batch = [keys[i] for i in rng.permutation(len(keys))[:10]]
        cache.put_many([(k, _expected(k)) for k in batch], counters)
        for k, found in zip(batch, cache.get_many(batch, DIMS, counters), strict=True):
            if found is not None and found.tobytes() != _expected(k).tobytes():
                wrong += 1
    return wrong, counters.corrupt, counters.hits, counters.write_errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers start from a fork server")
def test_concurrent_writers_in_several_processes(tmp_path: Path) -> None:
    # forkserver, not fork: a worker of the test run holds threads (xdist's, and those an earlier test left, such as a
    # Ray driver's), and a child forked from a threaded process can deadlock on a lock one of them held (seen in CI)
    context = multiprocessing.get_context("forkserver")
    with context.Pool(4) as pool:
        results = pool.map_async(_hammer, [(str(tmp_path), seed, 80) for seed in range(4)]).get(timeout=45)
    assert [r[0] for r in results] == [0, 0, 0, 0]  # never a wrong vector
    assert [r[1] for r in results] == [0, 0, 0, 0]  # never a torn file
    assert [r[3] for r in results] == [0, 0, 0, 0]
    assert sum(r[2] for r in results) > 0
    entries, temps = scan_cache_dir(tmp_path)
    assert temps == []
    for entry in entries:  # every file left is whole and right
        loaded = np.load(tmp_path / entry.name, allow_pickle=False)
        assert loaded.tobytes() == _expected(entry.name[:-4]).tobytes()
    assert 0 < len(entries) <= 40


# -- runner cache stats|clear -----------------------------------------------------------------------


def test_cache_stats_and_clear(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many([(key(i), vec(i)) for i in range(3)])
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / f".tmp-{key(9)}.1.2.3").write_bytes(b"half")
    written = 1_700_000_000 * 10**9
    for i in range(3):
        os.utime(tmp_path / f"{key(i)}.npy", ns=(written + 3600 * 10**9, written + i * 86400 * 10**9))
    out = io.StringIO()
    assert cache_command("stats", str(tmp_path), out) == 0
    assert out.getvalue() == (
        f"cache:   {tmp_path}\n"
        "files:   3\n"
        f"bytes:   {3 * ENTRY_BYTES} B\n"
        "oldest:  2023-11-14T22:13:20Z (written)\n"
        "newest:  2023-11-16T22:13:20Z (written)\n"
        "used:    2023-11-14T23:13:20Z (last hit or write)\n"
        "temporary files: 1 (writes in progress, or left by a crashed writer)\n"
    )
    out = io.StringIO()
    assert cache_command("clear", str(tmp_path), out) == 0
    assert out.getvalue() == f"removed 4 cache files ({3 * ENTRY_BYTES} B) from {tmp_path}\n"
    assert names(tmp_path) == ["notes.txt"]
    out = io.StringIO()
    assert cache_command("stats", str(tmp_path), out) == 0
    assert out.getvalue() == f"cache:   {tmp_path}\nfiles:   0\nbytes:   0 B\n"


def test_cache_command_errors(tmp_path: Path) -> None:
    out = io.StringIO()
    assert cache_command("stats", str(tmp_path / "nowhere"), out) == 1
    assert out.getvalue() == f"runner cache: {tmp_path / 'nowhere'}: no such folder\n"
    out = io.StringIO()
    assert cache_command("purge", str(tmp_path), out) == 2
    assert out.getvalue() == "runner cache: unknown action 'purge'; use one of: stats, clear\n"


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 999, 1000, 1_234_567, 256_000_000, 3 * 10**15)] == [
        "0 B",
        "999 B",
        "1,000 B (1.0 kB)",
        "1,234,567 B (1.2 MB)",
        "256,000,000 B (256.0 MB)",
        "3,000,000,000,000,000 B (3000.0 TB)",
    ]


def test_only_our_names_count_as_cache_files() -> None:
    assert is_cache_file(f"{key(1)}.npy")
    assert is_cache_file(f".tmp-{key(1)}.12.34.0")
    assert not is_cache_file("notes.txt")
    assert not is_cache_file(f"{key(1)}.npy.bak")
    assert not is_cache_file(f"{key(1)[:-1]}.npy")


def test_from_config(tmp_path: Path) -> None:
    from runner.config.embeddings import CacheConfig

    config = CacheConfig(dir="cache", max_file_number=7, max_cache_size=4096, ttl=60.0)
    embedder = CachedEmbedder.from_config(CountingEmbedder(), config, base=tmp_path)
    assert embedder.cache is not None
    assert (embedder.cache.dir, embedder.cache.max_file_number, embedder.cache.max_cache_size, embedder.cache.ttl) == (
        tmp_path / "cache",
        7,
        4096,
        60.0,
    )
    assert CachedEmbedder.from_config(CountingEmbedder(), None).cache is None
