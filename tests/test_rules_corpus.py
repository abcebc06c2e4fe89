"""The corpus of invalid workflows: every file in tests/invalid/ pins its exact problems.

Each file starts with comment lines ``# expect: LINE:COL: SEVERITY: MESSAGE [RULE]``, one per problem, in
the order ``runner validate`` reports them (``# set: NAME=VALUE`` lines: checked as with ``--set``); files
that cannot hold a comment (empty, UTF-16) are pinned in ``NO_HEADER``. Huge inputs are generated here
rather than committed.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import tracemalloc
from pathlib import Path

import pytest

from runner.cli import main
from runner.commands.validate import check_paths
from runner.validate.check import check_file
from runner.validate.rules.catalog import RULES
from runner.workflow.limits import MAX_FILE_BYTES
from tests.conftest import ROOT, run_cli

CORPUS = ROOT / "tests" / "invalid"
FILES = sorted(CORPUS.glob("*.yaml"))
NO_HEADER = {
    "empty.yaml": ["1:1: error: the file is empty [empty-file]"],
    "encoding-utf16.yaml": ["1:1: error: the file is not valid UTF-8 (byte 0xff at offset 0) [encoding]"],
}


def expected(path: Path) -> list[str]:
    if path.name in NO_HEADER:
        return NO_HEADER[path.name]
    out = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# expect: "):
            out.append(line.removeprefix("# expect: "))
    return out


def sets(path: Path) -> list[str]:
    head = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return [line.removeprefix("# set: ") for line in head if line.startswith("# set: ")]


def reported(path: Path) -> list[str]:
    problems = check_paths([str(path)], sets=sets(path))[0] if sets(path) else check_file(path)[1]
    assert all(p.file == str(path) for p in problems)
    return [p.format_line().removeprefix(f"{path}:") for p in problems]


def test_the_corpus_is_large_enough() -> None:
    assert len(FILES) >= 60


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_invalid_file_reports_exactly_its_pinned_problems(path: Path) -> None:
    want = expected(path)
    assert want, f"{path.name} pins no problem"
    # (No time bound here: the files that could make the loader work without end, the alias bomb and deep
    # nesting, have their work counted in tests/test_yaml_loading.py; pytest-timeout bounds a hang.)
    assert reported(path) == want


def test_every_rule_is_covered_by_the_corpus() -> None:
    covered = {line.rsplit("[", 1)[1].rstrip("]") for path in FILES for line in expected(path)}
    # io and file-too-large need a directory and a huge file: both are made by the tests below; include-cycle's
    # message names the files of the chain by their paths, so tests/test_subworkflows.py pins it.
    assert set(RULES) - covered == {"io", "file-too-large", "include-cycle"}
    assert covered <= set(RULES)


def test_a_50_mb_file_is_refused_fast_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    line = "# " + "x" * 97 + "\n"  # 100 bytes
    with path.open("w", encoding="ascii") as f:
        f.write("version: 1\nname: huge\nstages:\n")
        f.write(line * (50 * 1024 * 1024 // len(line)))
    tracemalloc.start()
    try:
        _, problems = check_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the work bounded by what was read: at most the limit in memory (not 50 MB), and nothing parsed
    # beyond the one problem
    assert peak < 4 * MAX_FILE_BYTES
    size = path.stat().st_size
    # 1 MiB = 30 bytes on 3 lines + 10,485 lines of 100 bytes + 46 bytes: the 47th byte of line 10,489 is over
    assert [p.format_line() for p in problems] == [
        f"{path}:10489:47: error: the file is {size:,} bytes, over the limit of 1,048,576 bytes for a workflow; "
        "reading stopped here [file-too-large]"
    ]


def test_a_file_just_under_the_limit_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    head = "version: 1\nname: big\nstages: [{id: s, agent: a}]\n"
    path.write_text(head + "#" * (MAX_FILE_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    _, problems = check_file(path)
    assert [p.rule for p in problems] == ["unknown-agent"]


def test_an_unreadable_path_is_an_io_problem(tmp_path: Path) -> None:
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    _, problems = check_file(folder)
    assert [p.format_line() for p in problems] == [f"{folder}:1:1: error: cannot read the file: it is a folder [io]"]


def test_the_whole_corpus_through_the_cli_exits_1_with_every_problem(capsys) -> None:
    # named one by one: in a folder, files that are not workflows (empty, a list, UTF-16) would be skipped
    assert main(["validate", *map(str, FILES)]) == 1
    out = capsys.readouterr().out
    # without --set, a file whose problems come from its `# set:` lines is clean
    total = sum(len(expected(path)) for path in FILES if not sets(path))
    errors = sum(1 for path in FILES if not sets(path) for line in expected(path) if ": error: " in line)
    assert out.splitlines()[-1] == f"{errors} error(s), {total - errors} warning(s) in {len(FILES)} file(s)"


def test_the_corpus_through_a_subprocess_never_shows_a_traceback() -> None:
    proc = run_cli("validate", "--format", "json", *(str(path.relative_to(ROOT)) for path in FILES))
    assert (proc.returncode, proc.stderr) == (1, "")
    doc = json.loads(proc.stdout)
    assert doc["files"] == len(FILES)
    assert len(doc["problems"]) == sum(len(expected(path)) for path in FILES if not sets(path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    # A writer stands by: opening the pipe to read (which waits for a writer) would let it in, and it tells.
    # Afterwards the test holds the pipe open to read itself (without waiting), so the writer, wherever it
    # stands, gets in, finds the test finished and goes.
    validate_opened = threading.Event()
    finished = threading.Event()

    def writer() -> None:
        while not finished.is_set():  # as often as the pipe is opened: a broken validate fails, never hangs
            try:
                with open(fifo, "w") as f:  # returns once a reader has opened the pipe
                    if finished.is_set():
                        return
                    validate_opened.set()
                    f.write("version: 1\n")
            except OSError:  # the reader has gone: broken pipe
                pass

    standby = threading.Thread(target=writer, daemon=True)
    standby.start()
    assert main(["validate", str(fifo)]) == 1
    finished.set()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        standby.join(10)
    finally:
        os.close(reader)
    assert not standby.is_alive() and not validate_opened.is_set()
    assert capsys.readouterr().out == (
        f"{fifo}:1:1: error: cannot read the file: not a regular file [io]\n1 error(s), 0 warning(s) in 1 file(s)\n"
    )


CRLF_SAFE = [
    p for p in FILES if p.name not in NO_HEADER and all(rule not in p.stem for rule in ("encoding", "control"))
]


@pytest.mark.parametrize("path", CRLF_SAFE, ids=lambda p: p.stem)
def test_windows_line_endings_give_the_same_positions(path: Path, tmp_path: Path) -> None:
    crlf = tmp_path / path.name
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    for module in CORPUS.glob("*.py"):  # the modules the files' tools and python stages name
        (tmp_path / module.name).write_bytes(module.read_bytes())
    shutil.copytree(CORPUS / "children", tmp_path / "children")  # the child workflows the files run
    want = expected(path)
    problems = check_paths([str(crlf)], sets=sets(path))[0] if sets(path) else check_file(crlf)[1]
    assert [p.format_line().removeprefix(f"{crlf}:") for p in problems] == want
