"""``runner run --resume RUN_FOLDER``: after SIGKILL, SIGTERM or failures, every row exactly once in results.jsonl.

The kills are placed by events: the loopback server answers the first half of the rows and holds the rest, so
the test signals the process once results.jsonl has that many lines, whatever the machine's speed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.oai_server import OAIServer, Plan
from tests.test_dataset_cli import SCRIPTED, cli, folder_of, lines, remote

pytestmark = pytest.mark.timeout(90)

N = 20


def dataset(tmp_path: Path, n: int = N) -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(n)))
    return data


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def wait_for_lines(reports: Path, count: int, proc: subprocess.Popen[str], within: float = 30) -> Path:
    """The run folder, once its results.jsonl has ``count`` lines (``within`` only bounds a hang)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        results = list((reports / "runs").glob("*/results.jsonl")) if (reports / "runs").is_dir() else []
        if results and results[0].read_bytes().count(b"\n") >= count:
            return results[0].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"results.jsonl did not reach {count} lines")


def exactly_once(folder: Path, n: int = N) -> list[dict[str, Any]]:
    got = lines(folder)
    assert sorted(g["index"] for g in got) == list(range(n))  # each row once: none lost, none twice
    return got


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_batch_resumes_to_every_row_exactly_once(tmp_path: Path, sig: signal.Signals) -> None:
    release = threading.Event()
    with OAIServer() as server:
        # The first half answers at once; the rest waits for the test, so the kill comes with half the rows done.
        server.plan(*[Plan(content=f"a{i}") for i in range(N // 2)], *[Plan(wait=release) for _ in range(N)])
        wf = tmp_path / "wf.yaml"
        wf.write_text(remote(server.url))
        data = dataset(tmp_path)
        reports = tmp_path / "r"
        proc = start("run", str(wf), "--dataset", str(data), "--concurrency", "4", "--report-dir", str(reports))
        folder = wait_for_lines(reports, N // 2, proc)
        server.wait_for_requests(N // 2 + 4)  # the next rows are in flight, held by the server
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
        release.set()
        if sig == signal.SIGTERM:
            assert proc.returncode == 143
            assert stderr.splitlines()[-1] == (
                f"runner: terminated; partial report written; continue with: runner run --resume {folder}"
            )
            report = json.loads((folder / "report.json").read_text())
            assert report["run"]["status"] == "interrupted" and report["rows"]["ok"] == N // 2
        else:
            assert proc.returncode == -signal.SIGKILL
        assert len(lines(folder)) == N // 2
        server.reset()
        resumed = cli("run", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    got = exactly_once(folder)
    assert all(g["status"] == "ok" for g in got)
    report = json.loads((folder / "report.json").read_text())
    assert (report["rows"]["ok"], report["rows"]["skipped"]) == (N // 2, N // 2)
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM rows WHERE state = 'done'").fetchone() == (N,)


def test_a_server_failing_every_7th_request_then_retry_errors(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan(*[Plan(status=500) if k % 7 == 0 else Plan() for k in range(1, 200)])
        wf = tmp_path / "wf.yaml"
        wf.write_text(remote(server.url))
        data = dataset(tmp_path, 30)
        reports = tmp_path / "r"
        first = cli("run", str(wf), "--dataset", str(data), "--concurrency", "1", "--report-dir", str(reports))
        assert first.returncode == 1
        folder = folder_of(reports)
        failed = sorted(g["index"] for g in lines(folder) if g["status"] == "failed")
        assert failed == [6, 13, 20, 27]  # requests 7, 14, 21, 28
        for _ in range(5):  # each resume reruns what failed; the 7th request of the server still fails
            again = cli("run", "--resume", str(folder), "--retry-errors")
            if again.returncode == 0:
                break
    assert again.returncode == 0, again.stderr
    got = exactly_once(folder, 30)
    assert all(g["status"] == "ok" for g in got)
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        attempts = dict(db.execute("SELECT idx, attempts FROM rows WHERE attempts > 1"))
    assert set(attempts) == set(failed)


def test_a_torn_line_and_a_row_written_but_not_marked_done(tmp_path: Path) -> None:
    """A kill between writing a row's line and its ledger entry, or in the middle of a line: the resume trusts
    results.jsonl, runs neither row twice nor loses one."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = dataset(tmp_path, 6)
    reports = tmp_path / "r"
    assert cli("run", str(wf), "--dataset", str(data), "--report-dir", str(reports)).returncode == 0
    folder = folder_of(reports)
    text = (folder / "results.jsonl").read_text().splitlines(keepends=True)
    by_index = {json.loads(t)["index"]: t for t in text}
    kept = [by_index[i] for i in range(4)]
    (folder / "results.jsonl").write_text("".join(kept) + by_index[4][:25])  # row 4 torn, row 5 gone
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        db.execute("UPDATE rows SET state = 'running' WHERE idx IN (3, 4, 5)")  # 3: written, not marked done
    resumed = cli("run", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    got = exactly_once(folder, 6)
    assert [g["index"] for g in got[:4]] == [0, 1, 2, 3]  # kept as they were; rows 4 and 5 appended
    report = json.loads((folder / "report.json").read_text())
    assert (report["rows"]["ok"], report["rows"]["skipped"]) == (2, 4)


def test_an_edited_workflow_is_refused_unless_forced(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": 2}\n')
    cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"))
    folder = folder_of(tmp_path / "r")
    wf.write_text(SCRIPTED.replace('"{{ input }}!"', '"{{ input }}?"'))
    refused = cli("run", "--resume", str(folder), "--retry-errors")
    assert (refused.returncode, refused.stderr) == (
        1,
        f"runner: error: {wf}: the workflow changed since the batch in {folder} started; the rows done and the "
        "rows to come would not be of one workflow. Pass --force to resume with them as they are now, or start a "
        "new batch\n",
    )
    assert len(lines(folder)) == 2
    forced = cli("run", "--resume", str(folder), "--retry-errors", "--force")
    assert forced.returncode == 1  # row 1 is still not a string: it fails again, with the edited workflow
    assert exactly_once(folder, 2)[0]["output"] == "a x1!!"


def test_a_corrupt_or_foreign_ledger_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "ledger.sqlite").write_bytes(b"this is not a database, it is a text file " * 100)
    proc = cli("run", "--resume", str(folder))
    assert (proc.returncode, proc.stderr) == (
        1,
        f"runner: error: {folder / 'ledger.sqlite'}: not a runner ledger (file is not a database); the file is "
        "damaged or is another file\n",
    )
    (folder / "ledger.sqlite").unlink()
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.execute("CREATE TABLE rows (idx INTEGER)")
        db.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    db.close()
    proc = cli("run", "--resume", str(folder))
    assert (proc.returncode, proc.stderr) == (
        1,
        f"runner: error: {folder / 'ledger.sqlite'}: not a runner ledger (an SQLite database of something else); "
        "leave it alone\n",
    )
    proc = cli("run", "--resume", str(tmp_path / "nowhere"))
    assert (proc.returncode, proc.stderr) == (
        1,
        f"runner: error: --resume {tmp_path / 'nowhere'}: no such run folder (a folder `runner run --dataset` made)\n",
    )
    proc = cli("run", "--resume", str(tmp_path / "run"), "--dataset", "x.jsonl")
    assert proc.returncode == 2
    assert proc.stderr == "runner: error: --dataset: a resumed batch keeps its settings; drop them with --resume\n"


def test_a_batch_running_in_a_folder_keeps_a_second_runner_out(tmp_path: Path) -> None:
    from runner.locking import FileLock

    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = dataset(tmp_path, 2)
    assert cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r")).returncode == 0
    folder = folder_of(tmp_path / "r")
    with FileLock(folder / ".lock"):  # as a runner still running this batch holds it
        proc = cli("run", "--resume", str(folder))
    assert (proc.returncode, proc.stderr) == (
        1,
        f"runner: error: {folder}: another runner is running this batch now; let it finish (or stop it), then resume\n",
    )
    assert cli("run", "--resume", str(folder)).returncode == 0  # once it is gone


def test_an_edited_dataset_is_refused_unless_forced(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = dataset(tmp_path, 3)
    cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"), "--limit", "2")
    folder = folder_of(tmp_path / "r")
    with data.open("a") as f:
        f.write(json.dumps({"text": "late"}) + "\n")
    refused = cli("run", "--resume", str(folder))
    assert (refused.returncode, refused.stderr) == (
        1,
        f"runner: error: {data}: the dataset changed since the batch in {folder} started (its size or time of "
        "change); its rows may no longer be the rows the index names. Pass --force to resume with them as they "
        "are now, or start a new batch\n",
    )
    assert cli("run", "--resume", str(folder), "--force").returncode == 0
    assert cli("run", "--resume", str(folder)).returncode == 0  # the forced state is the one kept
    assert exactly_once(folder, 2)
