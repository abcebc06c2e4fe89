"""Several processes storing into one embedding cache folder at once: what waiting for the folder's lock costs.

    python bench/cache_contention.py [--processes 4] [--vectors 2000] [--batch 5] [--dims 256] [--rounds 3]
                                     [--lock flock|poll]

Each process stores ``--vectors`` vectors of its own in batches of ``--batch`` (as the four workers of
tests/test_hardening_cache.py do), under a file limit that keeps every batch evicting. Reported per round: the
wall time of the slowest process, and the median, 99th percentile and worst time of one ``put_many``.

``--lock poll`` swaps the lock's system call for ``filelock.lock_descriptor`` (pip install filelock): the same
``flock`` on the same descriptor, but waiting by retrying every 50 ms, as the filelock package does, instead of
sleeping in the kernel until the holder releases. runner/locking.py cites the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from runner import locking
from runner.embeddings.cache_entries import entry_key
from runner.embeddings.cache_folder import EmbeddingCache

folder, seed, go, vectors, batch, dims, lock = sys.argv[1:8]
vectors, batch, dims = int(vectors), int(batch), int(dims)
if lock == "poll":
    import filelock
    locking._lock_file = lambda fd, blocking, offset: filelock.lock_descriptor(fd, blocking=blocking)
    locking._unlock_file = lambda fd, offset: filelock.unlock_descriptor(fd)
cache = EmbeddingCache(folder, max_file_number=100)
cache.open()
keys = [entry_key(f"bench/{dims}", f"{seed} {i}") for i in range(vectors)]
vector = np.ones(dims, np.float32)
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
latencies = []
started = time.perf_counter()
for start in range(0, vectors, batch):
    t = time.perf_counter()
    cache.put_many([(k, vector) for k in keys[start : start + batch]])
    latencies.append(time.perf_counter() - t)
print(json.dumps([time.perf_counter() - started, latencies]), flush=True)
"""


def one_round(args: argparse.Namespace) -> tuple[float, list[float]]:
    root = Path(tempfile.mkdtemp(prefix="runner-contention-"))
    go, folder = root / "go", root / "cache"
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [str(args.vectors), str(args.batch), str(args.dims), args.lock]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder), str(seed), str(go), *argv],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in range(args.processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        go.touch()
        results = [json.loads(worker.communicate(timeout=600)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        shutil.rmtree(root, ignore_errors=True)
    return max(r[0] for r in results), sorted(t for r in results for t in r[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--vectors", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lock", choices=("flock", "poll"), default="flock")
    args = parser.parse_args(argv)
    print(
        f"{args.processes} processes x {args.vectors:,} vectors of {args.dims} floats in batches of {args.batch}, "
        f"one folder, lock: {args.lock}"
    )
    for r in range(args.rounds):
        slowest, latencies = one_round(args)
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99)]
        print(
            f"round {r + 1}: slowest process {slowest:.2f} s; put_many p50 {p50 * 1e3:.2f} ms, "
            f"p99 {p99 * 1e3:.1f} ms, worst {latencies[-1] * 1e3:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
