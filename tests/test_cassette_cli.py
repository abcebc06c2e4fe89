"""``runner cassette stats|prune DIR`` and a strict miss inside a fan-out that collects errors (issue 19)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.secret_scan import API_KEY, API_KEY_ENV
from tests.test_replay_runs import record

pytestmark = [pytest.mark.timeout(90)]


def test_stats_says_what_a_cassette_holds(tmp_path: Path) -> None:
    _, tape, _ = record(tmp_path)
    proc = run_cli("cassette", "stats", str(tape))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"cassette: {tape}"
    assert re.fullmatch(r"entries: 5 \([0-9.]+ kB\); distinct requests: 3, made more than once: 1", lines[1])
    assert re.fullmatch(r"answers: 5 streamed \([0-9]+ chunks\), 0 whole", lines[2])
    assert lines[3:5] == ["by model:", "  main (test-model) /chat/completions  5"]
    assert re.fullmatch(r"recorded latency: median [0-9.]+ s, from [0-9.]+ to [0-9.]+ s", lines[5])
    assert len(lines) == 6


def test_prune_removes_what_the_workflow_no_longer_asks_for(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path)
    wf.write_text(wf.read_text().replace("range(3)", "range(2)"))
    proc = run_cli("cassette", "prune", str(tape), str(wf), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    (third,) = [p.name for p in tape.glob("*-3.json")]
    assert proc.stdout == (
        f"unused: {third} (main (test-model), /chat/completions, recorded by stage 'drafts[2]')\n"
        f"cassette {tape}: would remove 1 of 5 entries; 4 used by {wf}\n"
    )
    assert len(list(tape.glob("*.json"))) == 5
    proc = run_cli("cassette", "prune", str(tape), str(wf))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"removed: {third} ")
    assert len(list(tape.glob("*.json"))) == 4
    replay = run_cli("run", str(wf), "--replay", str(tape), "--strict", "--report-dir", str(tmp_path / "r"))
    assert replay.returncode == 0, replay.stderr


def test_prune_refuses_a_cassette_that_does_not_replay_the_workflow(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path)
    wf.write_text(wf.read_text().replace("Find the count.", "Find the sum."))
    proc = run_cli("cassette", "prune", str(tape), str(wf))
    assert proc.returncode == 1
    assert proc.stderr.startswith("runner: error: stage 'research': model 'main' (test-model): the request is not in")
    assert proc.stderr.endswith(f"\nnothing was removed: the cassette does not replay {wf}\n")
    assert len(list(tape.glob("*.json"))) == 5
    usage = run_cli("cassette", "prune", str(tape))
    assert usage.returncode == 2
    assert usage.stderr == "runner: error: runner cassette prune DIR WF: name the workflow whose requests to keep\n"


def test_a_strict_miss_fails_the_run_even_where_the_fan_out_collects_errors(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path)
    text = wf.read_text().replace("agent: writer}", "agent: writer, on_error: collect}")
    wf.write_text(text.replace('input: "Draft it."', "input: \"Draft it{{ '!' if vars.item == 1 else '.' }}\""))
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "runner: error: stage 'drafts[1]': model 'main' (test-model): the request is not in cassette" in proc.stderr
    assert "    -   Draft it.\n    +   Draft it!\n" in proc.stderr
