"""Faults of the disk (issues 14 and 21): every write failure is a user-facing error naming the file and the
cause, the run's output comes first, the other report files stay valid, and no temporary file is left.

How the faults are made. The tests run as root, for whom permission bits stop nothing, and CI may not allow
mounts, so each fault is one a test can always make, and real wherever possible:

- **A file larger than the process may write** (``RLIMIT_FSIZE`` set in the child before ``exec``, with
  ``SIGXFSZ`` ignored so that writes fail with ``EFBIG``, "File too large"): the real kernel path of a write
  that stops part way, as on a full disk. It stands for "a report larger than the free space", "a trace that
  no longer fits" and a full run folder.
- **A file where a folder should be** (``ENOTDIR``, ``EEXIST``): real, anywhere.
- **A read-only folder**: ``chattr +i`` makes a folder immutable, which stops root too (``EPERM``). Where the
  file system has no such attribute, the injected fault below still covers the same code.
- **"No space left on device" itself** (``ENOSPC``) through the writer's seam (``runner.fsutil.fault``), in
  addition to the real faults above: the one cause that cannot be made on demand without a mount.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner import fsutil
from runner.cli import main
from runner.report.files import write_outputs
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.trace_check import assert_valid_trace

PROBE = """\
version: 1
name: probe
stages:
  - id: touch
    python: "marker:touch"
report: {dir: out/reports}
"""

MARKER = """\
from pathlib import Path


def touch():
    Path(__file__).with_name("ran").write_text("yes")
    return "touched"
"""

WIDE = """\
version: 1
name: wide
models:
  m: {provider: scripted, reply: "ok {{ vars.item }}", latency: {first_token_ms: 1}}
  d: {provider: scripted, reply: "done", latency: {first_token_ms: 1}}
agents:
  a: {model: m}
  b: {model: d}
stages:
  - id: fan
    fanout: {for_each: "{{ range(60) | list }}", as: item, agent: a}
  - {id: last, agent: b}
report: {formats: [json, markdown, trace]}
"""


def limit_file_size(limit: int) -> Callable[[], None]:
    """For ``preexec_fn``: the child may write no file beyond ``limit`` bytes; such writes fail with EFBIG."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """``folder`` read-only even for root, for the block (skips where the file system cannot do it)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not available here ({made.stderr.strip()}); the injected fault covers it")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def temp_files(root: Path) -> list[str]:
    """Every temporary file under ``root`` (any writer's: ours end in .tmp)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    (tmp_path / "marker.py").write_text(MARKER)
    wf = tmp_path / "probe.yaml"
    wf.write_text(PROBE)
    return wf


# -- the report folder is checked before the first call -------------------------------------------------


@pytest.mark.parametrize("layout", ["a file", "under a file"])
def test_an_unusable_report_dir_is_refused_before_anything_runs(probe: Path, tmp_path: Path, layout: str) -> None:
    (tmp_path / "taken").write_text("a file")
    target = tmp_path / "taken" if layout == "a file" else tmp_path / "taken" / "reports"
    proc = run_cli("run", str(probe), "--report-dir", str(target), "-q")
    problem = (
        "it is a file, not a folder" if layout == "a file" else f"cannot create it: {tmp_path / 'taken'} is a file"
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"runner: error: --report-dir {target}: {problem}; pass a folder that can be written\n"
    assert not (tmp_path / "ran").exists()  # the stage never ran: nothing was spent


def test_a_read_only_report_dir_is_refused_before_anything_runs(probe: Path, tmp_path: Path) -> None:
    target = tmp_path / "frozen"
    with immutable(target):
        proc = run_cli("run", str(probe), "--report-dir", str(target), "-q")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        f"runner: error: --report-dir {target}: cannot write in it: Operation not permitted; "
        "pass a folder that can be written\n"
    )
    assert not (tmp_path / "ran").exists()


def test_the_workflows_report_dir_is_located_at_its_line(
    probe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def read_only(path: str) -> None:
        if path.endswith("reports"):
            raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fsutil, "fault", read_only)
    assert main(["run", str(probe), "-q"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"runner: error: {probe}:6:15: report.dir out/reports: cannot write in it: Read-only file system; "
        "set report.dir (or pass --report-dir) to a folder that can be written\n"
    )
    assert not (tmp_path / "ran").exists()


def test_a_missing_report_dir_is_created_with_its_parents(probe: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper"
    proc = run_cli("run", str(probe), "--report-dir", str(target), "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "touched\n"
    (report,) = target.glob("*.json")
    assert_valid_report(json.loads(report.read_text()))
    assert temp_files(tmp_path) == []  # the probe of the folder is gone too


# -- a report that does not fit ----------------------------------------------------------------------------


def test_reports_larger_than_the_free_space(tmp_path: Path) -> None:
    """The Markdown summary fits, the JSON report and the trace do not: the output is printed first, each
    failure is named, what fits is written and valid, exit 1, no temporary file, no traceback."""
    (tmp_path / "marker.py").write_text(MARKER)
    wf = tmp_path / "wide.yaml"
    wf.write_text(WIDE)
    reports = tmp_path / "r"
    # --no-checkpoint: the reports are what cannot be written here, not the run's checkpoint (issue 23)
    proc = run_cli(
        "run", str(wf), "--report-dir", str(reports), "-q", "--no-checkpoint", preexec_fn=limit_file_size(12_000)
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "done\n"
    (md,) = reports.glob("*.md")
    base = str(md)[: -len(".md")]
    assert proc.stderr == (
        f"runner: error: could not write the report {base}.json: File too large\n"
        f"runner: error: could not write the trace {base}.trace.json: File too large\n"
    )
    assert md.read_text().startswith("# Run `wide`: ok in ")
    assert sorted(p.name for p in reports.iterdir()) == [md.name]
    assert temp_files(tmp_path) == []


def test_a_full_disk_under_the_markdown_summary_keeps_the_json_and_the_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(path: str) -> None:
        if path.endswith(".md"):
            raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "marker.py").write_text(MARKER)
    wf = tmp_path / "wide.yaml"
    wf.write_text(WIDE)
    monkeypatch.setattr(fsutil, "fault", full)
    reports = tmp_path / "r"
    assert main(["run", str(wf), "--report-dir", str(reports), "-q"]) == 1
    out, err = capsys.readouterr()
    assert out == "done\n"
    (report,) = reports.glob("*Z.json")
    md = report.with_suffix(".md")
    assert err == f"runner: error: could not write the Markdown summary {md}: No space left on device\n"
    assert_valid_report(json.loads(report.read_text()))
    assert_valid_trace(json.loads(report.with_suffix(".trace.json").read_text()))
    assert not md.exists() and temp_files(tmp_path) == []


def test_a_writer_that_crashes_stops_no_other_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: a Markdown crash also lost the trace. Each writer now runs on its own."""
    import runner.report.markdown as markdown
    from runner.report.files import ReportWriteError

    def crash(report: object) -> str:
        raise KeyError("python")

    report = _a_report(tmp_path)
    monkeypatch.setattr(markdown, "to_markdown", crash)
    target = tmp_path / "out" / "r.json"
    with pytest.raises(ReportWriteError) as info:
        write_outputs(report, target, ("json", "markdown", "trace"))
    assert str(info.value) == (
        f"could not write the Markdown summary {tmp_path / 'out' / 'r.md'}: KeyError: 'python' "
        "(a bug in runner; please report it)"
    )
    assert info.value.is_bug
    assert info.value.written == [target, tmp_path / "out" / "r.trace.json"]
    assert_valid_report(json.loads(target.read_text()))
    assert_valid_trace(json.loads((tmp_path / "out" / "r.trace.json").read_text()))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.json", "r.trace.json"]


def _a_report(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "marker.py").write_text(MARKER)
    wf = tmp_path / "wide.yaml"
    wf.write_text(WIDE)
    proc = run_cli("run", str(wf), "--report-dir", str(tmp_path / "first"), "-q")
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "first").glob("*Z.json")
    report: dict[str, object] = json.loads(path.read_text())
    return report


# -- a full run folder ---------------------------------------------------------------------------------------


@pytest.fixture
def long_conversation(tmp_path: Path) -> Path:
    for name in ("long-conversation.yaml", "example_tools.py"):
        (tmp_path / name).write_text((ROOT / "workflows" / name).read_text())
    return tmp_path / "long-conversation.yaml"


def test_a_full_run_folder_ends_the_run_with_the_file_and_the_cause(long_conversation: Path, tmp_path: Path) -> None:
    """The history (56 kB by the end) outgrows what may be written: the append that crosses the limit fails
    part way and is cut back, the run fails with a located message, and the report is still written."""
    reports = tmp_path / "r"
    # --no-checkpoint: the history is what cannot be written here, not the run's checkpoint (issue 23)
    proc = run_cli(
        "run", str(long_conversation), "--report-dir", str(reports), "--no-checkpoint",
        preexec_fn=limit_file_size(20_000),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (history,) = reports.glob("runs/*/memory/read.jsonl")
    assert proc.stderr.endswith(f"runner: error: could not write {history}: File too large\n")
    data = history.read_bytes()
    assert data.endswith(b"\n") and len(data) <= 20_000
    assert all(json.loads(line)["role"] for line in data.splitlines())  # whole lines only
    (report,) = reports.glob("*.json")
    document = json.loads(report.read_text())
    assert_valid_report(document)
    assert document["run"]["status"] == "failed"
    assert document["run"]["error"] == f"could not write {history}: File too large"
    assert temp_files(tmp_path) == []


def test_a_full_disk_under_a_snapshot_leaves_no_temporary_file(
    long_conversation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 21: the snapshot writer left `.snapshot-1.md.tmp` behind and the run exited 3."""

    def full(path: str) -> None:
        if os.path.basename(path).startswith("snapshot-"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "fault", full)
    reports = tmp_path / "r"
    assert main(["run", str(long_conversation), "--report-dir", str(reports), "-q"]) == 1
    out, err = capsys.readouterr()
    (folder,) = reports.glob("runs/*/memory/read")
    assert out == ""
    assert err.endswith(f"runner: error: could not write {folder / 'snapshot-1.md'}: No space left on device\n")
    assert "Traceback" not in err
    (report,) = reports.glob("*.json")
    assert_valid_report(json.loads(report.read_text()))
    assert temp_files(tmp_path) == []


# -- the writer itself -----------------------------------------------------------------------------------


def test_a_failed_write_names_the_file_and_the_cause_and_leaves_nothing(tmp_path: Path) -> None:
    from runner.fsutil import WriteError, atomic_write_bytes, atomic_write_with

    def half_then_fail(f: object) -> None:
        f.write(b"half of it")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out.json"
    target.write_text("the old, whole file")
    with pytest.raises(WriteError) as info:
        atomic_write_with(target, half_then_fail)
    error = info.value
    assert str(error) == f"could not write {target}: No space left on device"
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC and error.filename == str(target)
    assert target.read_text() == "the old, whole file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]

    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError) as info:
        atomic_write_bytes(tmp_path / "file" / "r.json", b"{}")
    assert str(info.value) == f"could not write {tmp_path / 'file' / 'r.json'}: File exists"


def test_a_failed_write_is_a_user_facing_error() -> None:
    from runner.errors import RunError
    from runner.fsutil import WriteError

    error = WriteError("r.json", OSError(errno.EFBIG, "File too large"))
    assert isinstance(error, RunError) and error.exit_code == 1


APPEND = """
import os, sys
from runner.fsutil import WriteError, append_whole
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
size = append_whole(fd, b'{"line": 1}\\n', 0, path)
try:
    append_whole(fd, b'{"line": 2, "pad": "' + b"x" * 200 + b'"}\\n', size, path)
except WriteError as exc:
    print(exc)
"""


def test_an_append_that_stops_part_way_is_cut_back(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", APPEND, str(history)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=limit_file_size(100),
    )
    assert proc.stdout == f"could not write {history}: File too large\n", proc.stderr
    assert history.read_bytes() == b'{"line": 1}\n'  # the 88 bytes that did fit were taken back


def test_every_file_runner_writes_goes_through_fsutil() -> None:
    """The class, not the case: no other module writes files by itself (issue 21)."""
    pattern = re.compile(
        r"open\([^)]*['\"][wax]b?\+?['\"]|\.write_text\(|\.write_bytes\(|\bimport tempfile|os\.replace\(|"
        r"os\.rename\(|O_CREAT|np\.save\(\w+\.with_suffix"
    )
    allowed = {
        "runner/fsutil.py": None,  # the writer
        "runner/locking.py": "O_CREAT",  # the lock file, made empty (the cache's 16-byte ledger is rewritten in place)
        "runner/memory/history.py": "O_CREAT",  # the history, opened for appends through fsutil.append_whole
        "runner/workflow/verdicts.py": "O_CREAT",  # a schema verdict: an empty file whose creation is the write
    }
    found = []
    for path in sorted((ROOT / "runner").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = pattern.search(line)
            if match and name in allowed and (allowed[name] is None or allowed[name] in match.group(0)):
                continue
            if match:
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []


# -- what kill -9 leaves behind is swept --------------------------------------------------------------------

HALF_WRITER = """
import sys, time
from runner.fsutil import atomic_write_with

def write(f):
    f.write(b"x" * 65536)
    f.flush()
    print("half", flush=True)
    time.sleep(60)

atomic_write_with(sys.argv[1], write)
"""


def start_half_writer(target: Path) -> subprocess.Popen[str]:
    """A process that writes half of ``target`` and waits; returns once the half is on disk."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITER, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "half\n"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """kill -9, and close the pipe to it."""
    proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_a_half_report_left_by_kill_9_is_removed_by_the_next_run(probe: Path, tmp_path: Path) -> None:
    reports = tmp_path / "r"
    runs = reports / "runs" / "probe-20260101T000000.000000Z" / "memory" / "a"
    writers = [start_half_writer(reports / "probe-x.json"), start_half_writer(runs / "snapshot-1.md")]
    for writer in writers:
        stop(writer)  # SIGKILL: no cleanup runs
    left = temp_files(tmp_path)
    assert len(left) == 2 and all(str(w.pid) in "".join(left) for w in writers)
    (reports / "user-notes.tmp").write_text("not ours: a name runner never makes")
    proc = run_cli("run", str(probe), "--report-dir", str(reports), "-q")
    assert proc.returncode == 0, proc.stderr
    assert temp_files(tmp_path) == ["r/user-notes.tmp"]


def test_a_live_writers_file_is_never_swept(tmp_path: Path) -> None:
    from runner.commands.run import sweep_run_files
    from runner.fsutil import sweep_stale_temps

    writer = start_half_writer(tmp_path / "live.json")
    try:
        (live,) = temp_files(tmp_path)
        assert sweep_stale_temps(tmp_path) == []
        sweep_run_files(tmp_path)
        assert temp_files(tmp_path) == [live]
    finally:
        stop(writer)
    assert sweep_stale_temps(tmp_path) == [live]  # now its writer is gone


def test_temporary_files_of_other_hosts_and_earlier_versions_go_by_age(tmp_path: Path) -> None:
    from runner.fsutil import sweep_stale_temps

    now = time.time_ns()
    hour = 3600 * 10**9
    names = {
        ".r.json.123-abcdef-0.tmp": now - hour - 1,  # another host: its PID cannot be checked; old
        ".r.json.124-abcdef-0.tmp": now - hour + 10**9,  # another host, young: may be mid-write
        ".r.json.k3j9x0ab.tmp": now - hour - 1,  # tempfile's name, from an earlier version; old
        ".r.json.k3j9x0ac.tmp": now,  # the same, young
        ".notes.tmp": now - 10 * hour,  # no name of ours
    }
    host = fsutil._host_tag()
    assert host != "abcdef"
    for name, mtime in names.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, ns=(mtime, mtime))
    legacy = re.compile(r"^\..+\.json\.[a-z0-9_]{8}\.tmp$")
    removed = sweep_stale_temps(tmp_path, legacy=legacy, now_ns=now)
    assert sorted(removed) == [".r.json.123-abcdef-0.tmp", ".r.json.k3j9x0ab.tmp"]


SWEEPER = """
import sys, time
from pathlib import Path
from runner.fsutil import sweep_stale_temps
folder, done = Path(sys.argv[1]), Path(sys.argv[2])
print("sweeping", flush=True)
sweeps = 0
while not done.exists():
    sweep_stale_temps(folder)
    sweeps += 1
print(sweeps)
"""

SLOW_WRITER = """
import sys, time
from pathlib import Path
from runner.fsutil import atomic_write_with
folder, done = Path(sys.argv[1]), Path(sys.argv[2])

def write(f):
    for _ in range(4):
        f.write(b"y" * 4096)
        f.flush()
        time.sleep(0.002)  # the temporary file lives a while: the sweeper sees it often

for i in range(60):
    atomic_write_with(folder / f"r{i}.json", write)
done.write_text("done")
print("wrote 60", flush=True)
"""


def test_sweeping_while_another_process_writes_never_loses_its_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = tmp_path / "done"
    folder = tmp_path / "shared"
    folder.mkdir()
    sweeper = subprocess.Popen(
        [sys.executable, "-c", SWEEPER, str(folder), str(done)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert sweeper.stdout is not None and sweeper.stdout.readline() == "sweeping\n"
    writer = subprocess.run(
        [sys.executable, "-c", SLOW_WRITER, str(folder), str(done)], capture_output=True, text=True, env=env, timeout=60
    )
    sweeps = int(sweeper.communicate(timeout=30)[0])
    assert writer.returncode == 0, writer.stderr  # a swept temporary file would fail its rename
    assert writer.stdout == "wrote 60\n"
    assert sweeps > 60
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"r{i}.json" for i in range(60))
    assert all(p.stat().st_size == 4 * 4096 for p in folder.iterdir())


STORE_KILLED = """
import asyncio, sys, time
from runner.embeddings.hashing import HashingEmbedder
from runner.embeddings.store import VectorStore
from runner.fsutil import atomic_write_with

path = sys.argv[1]

async def main():
    store = VectorStore(path, HashingEmbedder(32))
    await store.record(["kept one", "kept two"])

    def stuck(segments):
        def write(f):
            f.write(b'{"half": ')
            f.flush()
            print("segment written, manifest half", flush=True)
            time.sleep(60)
        atomic_write_with(store.path / "manifest.json", write)

    store._write_manifest = stuck
    await store.record(["lost in the crash"])

asyncio.run(main())
"""


def test_store_segments_and_temporary_files_left_by_kill_9_are_removed_on_load(tmp_path: Path) -> None:
    import asyncio

    from runner.embeddings.hashing import HashingEmbedder
    from runner.embeddings.store import VectorStore

    path = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", STORE_KILLED, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "segment written, manifest half\n"
    stop(proc)
    manifest = json.loads((path / "manifest.json").read_text())
    listed = {s["name"] for s in manifest["segments"]}
    on_disk = {p.name for p in path.iterdir()}
    orphans = {n for n in on_disk if n.startswith("seg-") and n.split(".")[0] not in listed}
    assert len(orphans) == 2 and len(temp_files(path)) == 1  # a segment pair and the half manifest

    store = VectorStore(path, HashingEmbedder(32))
    assert asyncio.run(store.count()) == 2
    assert {p.name for p in path.iterdir()} == {n for n in on_disk if n not in orphans and not n.endswith(".tmp")}


def test_the_sweep_looks_only_at_the_newest_run_folders(tmp_path: Path) -> None:
    """A run does not walk every earlier run's folder: the newest few (where a killed run is) are enough."""
    from runner.commands.run import RECENT_RUN_FOLDERS, sweep_run_files

    runs = tmp_path / "runs"
    dead = _dead_pid()
    name = f".snapshot-1.md.{dead}-{fsutil._host_tag()}-0.tmp"
    stamps = [f"wf-2026010{d}T000000.000000Z" for d in range(1, RECENT_RUN_FOLDERS + 2)]
    for stamp in stamps:
        (runs / stamp / "memory" / "a").mkdir(parents=True)
        (runs / stamp / "memory" / "a" / name).write_text("x")
    sweep_run_files(tmp_path)
    assert temp_files(tmp_path) == [f"runs/{stamps[0]}/memory/a/{name}"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


def test_stored_results_and_snapshots_are_synced_when_the_memory_closes(
    long_conversation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 21: the snapshot writer did not sync. Each file is synced once, at the memory's close, off the
    loop (an fsync in the middle of a turn would be most of what memory costs a turn)."""
    import runner.memory.working as working

    synced: list[Path] = []
    real = working.sync_files

    def recording(paths: list[Path]) -> None:
        synced.extend(paths)
        real(paths)

    monkeypatch.setattr(working, "sync_files", recording)
    assert main(["run", str(long_conversation), "--report-dir", str(tmp_path / "r"), "-q"]) == 0
    capsys.readouterr()
    (folder,) = (tmp_path / "r").glob("runs/*/memory/read")
    written = sorted(folder.iterdir())
    assert len(written) > 10 and sorted(synced) == written
