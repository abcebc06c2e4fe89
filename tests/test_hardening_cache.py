"""The embedding cache across processes and when it fails (issue 21).

Four real processes share one cache folder: its limits must hold while they run (within 10%, sampled from a
fifth process as often as it can look) and exactly once they have exited. A cache that cannot do its job (a
file in its folder's place, a read-only folder, a full disk, corrupt entries) says so once per run on stderr
and in the report's bottlenecks, naming the folder and the cause. The faults are made as in
``tests/test_hardening_disk.py``: real where they can be (a file, ``chattr +i``), the writer's seam for ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner import fsutil
from runner.cli import main
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.test_hardening_disk import immutable, start_half_writer, stop

DIMS = 16
ENTRY_BYTES = 128 + 4 * DIMS  # a version 1.0 .npy header, then the floats
LIMIT = 30

WORKER = """
import sys, time
from pathlib import Path
import numpy as np
from runner.embeddings.cache_entries import entry_key
from runner.embeddings.cache_folder import EmbeddingCache

directory, seed, kind, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
limits = {"max_file_number": 30} if kind == "files" else {"max_cache_size": f"{30 * (128 + 64)}B"}
cache = EmbeddingCache(directory, **limits)
own = [entry_key("test/m/16", f"{seed} {i}") for i in range(240)]
shared = [entry_key("test/m/16", f"shared {i}") for i in range(20)]
rng = np.random.default_rng(seed)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for start in range(0, len(own), 4):
    batch = own[start : start + 4] + [shared[int(rng.integers(len(shared)))]]
    cache.put_many([(k, np.full(16, float(len(k)), np.float32)) for k in batch])
    cache.get_many(batch + shared[:3], 16)
getattr(cache, "close", lambda: None)()  # (the lock file; older versions had none)
print("done", flush=True)
"""


def entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as scan:
        return [e for e in scan if re.fullmatch(r"[0-9a-f]{64}\.npy", e.name)]


@pytest.mark.parametrize("kind", ["files", "bytes"])
def test_four_processes_keep_the_limits_of_one_cache(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder), str(seed), kind, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in range(4)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        go.write_text("go")
        most = samples = 0
        while any(w.poll() is None for w in workers):  # while they run: as often as a scan takes
            found = entries(folder)
            count = len(found) if kind == "files" else sum(_size(e) for e in found) // ENTRY_BYTES
            most = max(most, count)
            samples += 1
        results = [w.communicate(timeout=30) for w in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=10)
    assert [w.returncode for w in workers] == [0, 0, 0, 0], [err for _, err in results]
    assert [out for out, _ in results] == ["done\n"] * 4
    assert samples > 10
    assert most <= LIMIT * 1.1  # while they run (issue 21 saw 90-121 files for a limit of 30)
    final = entries(folder)  # once they have exited: exactly the limit, 4 x 260 entries having been written
    assert len(final) == LIMIT
    assert sum(e.stat().st_size for e in final) == LIMIT * ENTRY_BYTES

    from runner.embeddings.cache_folder import EmbeddingCache

    assert EmbeddingCache(folder).usage() == (LIMIT, LIMIT * ENTRY_BYTES)


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat().st_size
    except FileNotFoundError:  # evicted while we looked
        return 0


def test_the_ledger_is_corrected_when_a_cache_is_opened(tmp_path: Path) -> None:
    """A writer killed part way through a batch leaves the folder's counts short; the next opening counts
    the folder again under the lock, so the limits hold from then on."""
    import numpy as np

    from runner.embeddings.cache_entries import entry_key
    from runner.embeddings.cache_folder import LOCK, EmbeddingCache

    first = EmbeddingCache(tmp_path, max_file_number=5)
    first.put_many([(entry_key("k", str(i)), np.ones(DIMS, np.float32)) for i in range(5)])
    first.close()
    (tmp_path / LOCK).write_bytes(b"\0" * 16)  # counts that say the folder is empty
    second = EmbeddingCache(tmp_path, max_file_number=5)
    second.put_many([(entry_key("k", "new"), np.ones(DIMS, np.float32))])
    assert second.usage() == (5, 5 * ENTRY_BYTES)
    assert len(entries(tmp_path)) == 5


def test_a_killed_writers_temporary_file_is_swept_when_the_cache_opens(tmp_path: Path) -> None:
    from runner.embeddings.cache_entries import entry_key, is_cache_file, scan_cache_dir
    from runner.embeddings.cache_folder import EmbeddingCache

    writer = start_half_writer(tmp_path / f"{entry_key('k', 'x')}.npy")
    stop(writer)
    _, temps = scan_cache_dir(tmp_path)
    assert len(temps) == 1 and is_cache_file(temps[0])
    EmbeddingCache(tmp_path).open()
    assert scan_cache_dir(tmp_path) == ([], [])


# -- a cache that cannot do its job says so ---------------------------------------------------------------


@pytest.fixture
def remembering(tmp_path: Path) -> Path:
    """The long-term memory example with its cache in ``tmp_path/cache`` and its store in ``tmp_path``."""
    text = (ROOT / "workflows" / "long-term-memory.yaml").read_text()
    text = text.replace("dir: .runner/cache/embeddings", f"dir: {tmp_path / 'cache'}")
    text = text.replace("store: .runner/memory/long-term-example", f"store: {tmp_path / 'store'}")
    wf = tmp_path / "remember.yaml"
    wf.write_text(text)
    return wf


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("runner: warning:")]


def the_report(folder: Path) -> dict[str, object]:
    (path,) = folder.glob("*.json")
    report: dict[str, object] = json.loads(path.read_text())
    assert_valid_report(report)
    return report


def test_a_file_in_place_of_the_cache_folder_is_said_once(remembering: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file")
    proc = run_cli("run", str(remembering), "--report-dir", str(tmp_path / "r"), "-q")
    assert proc.returncode == 0, proc.stderr
    problem = "cannot use the folder (it is a file, not a folder): nothing is cached"
    assert warnings_in(proc.stderr) == [
        f"runner: warning: embedding cache of `default` ({tmp_path / 'cache'}): {problem}"
    ]
    report = the_report(tmp_path / "r")
    advice = report["bottlenecks"][0]  # type: ignore[index]
    assert (advice["cause"], advice["subject"], advice["setting"]) == (
        "cache",
        "default",
        "embeddings.default.cache.dir",
    )
    assert advice["message"] == (
        f"the embedding cache of `default` ({tmp_path / 'cache'}): {problem}; "
        "fix the folder or point `embeddings.default.cache.dir` at one that can be written"
    )


def test_a_read_only_cache_folder_is_said_once(remembering: Path, tmp_path: Path) -> None:
    with immutable(tmp_path / "cache"):
        proc = run_cli("run", str(remembering), "--report-dir", str(tmp_path / "r"), "-q")
    assert proc.returncode == 0, proc.stderr
    figures = the_report(tmp_path / "r")["cache"]["default"]  # type: ignore[index]
    n = figures["write_errors"]
    assert n >= 1
    assert warnings_in(proc.stderr) == [
        f"runner: warning: embedding cache of `default` ({tmp_path / 'cache'}): {n} write{'s' if n > 1 else ''} "
        f"failed (Operation not permitted): {'those texts' if n > 1 else 'that text'} will be embedded again "
        "next time"
    ]


def test_a_full_disk_under_the_cache_is_said_once(
    remembering: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(path: str) -> None:
        if path.startswith(str(tmp_path / "cache")):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "fault", full)
    assert main(["run", str(remembering), "--report-dir", str(tmp_path / "r"), "-q"]) == 0
    _, err = capsys.readouterr()
    n = the_report(tmp_path / "r")["cache"]["default"]["write_errors"]  # type: ignore[index]
    assert warnings_in(err) == [
        f"runner: warning: embedding cache of `default` ({tmp_path / 'cache'}): {n} write{'s' if n > 1 else ''} "
        f"failed (No space left on device): {'those texts' if n > 1 else 'that text'} will be embedded again "
        "next time"
    ]


def test_corrupt_entries_are_healed_and_said(remembering: Path, tmp_path: Path) -> None:
    for _ in range(2):  # the second run embeds its query (the first had nothing to recall from)
        first = run_cli("run", str(remembering), "--report-dir", str(tmp_path / "first"), "-q")
        assert first.returncode == 0 and warnings_in(first.stderr) == []
    for entry in entries(tmp_path / "cache"):
        Path(entry.path).write_bytes(b"\x93NUMPY but not really")
    proc = run_cli("run", str(remembering), "--report-dir", str(tmp_path / "r"), "-q")
    assert proc.returncode == 0, proc.stderr
    n = the_report(tmp_path / "r")["cache"]["default"]["corrupt"]  # type: ignore[index]
    assert n >= 1
    assert warnings_in(proc.stderr) == [
        f"runner: warning: embedding cache of `default` ({tmp_path / 'cache'}): "
        f"{n} corrupt entr{'ies' if n > 1 else 'y'} removed and embedded again"
    ]
    third = run_cli("run", str(remembering), "--report-dir", str(tmp_path / "third"), "-q")
    assert third.returncode == 0 and warnings_in(third.stderr) == []  # healed: nothing to say any more


def test_a_cache_that_works_says_nothing(remembering: Path, tmp_path: Path) -> None:
    proc = run_cli("run", str(remembering), "--report-dir", str(tmp_path / "r"), "-q")
    assert proc.returncode == 0 and warnings_in(proc.stderr) == []
    report = the_report(tmp_path / "r")
    assert report["cache"]["default"]["problem"] is None  # type: ignore[index]
    assert all(b["cause"] != "cache" for b in report["bottlenecks"])  # type: ignore[attr-defined]
