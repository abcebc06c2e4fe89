"""Every example in workflows/ validates, and every offline one runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import check_file, load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, assert_valid_report

EXAMPLES = sorted((ROOT / "workflows").glob("*.yaml"))


def offline(path: Path) -> bool:
    return all(m.provider == "scripted" for m in load_workflow(path).models.values())


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    _, problems = check_file(path)
    assert problems == []


@pytest.mark.parametrize("path", [p for p in EXAMPLES if offline(p)], ids=lambda p: p.name)
def test_offline_example_runs(path: Path, tmp_path: Path) -> None:
    # run a copy, so caches and stores the examples write land in tmp_path, not in the repository
    shutil.copytree(path.parent, tmp_path / "workflows", ignore=shutil.ignore_patterns(".runner", "__pycache__"))
    wf = load_workflow(tmp_path / "workflows" / path.name)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert_valid_report(outcome.report())


def test_quickstart_takes_one_analysts_time_and_the_editors() -> None:
    """The first run a user makes is quick because its three analysts run at once: its critical path is the
    fan-out, one analyst and the editor, and all three analysts are in flight together. (It was a bound of
    3 s on the wall time, which load can break and three analysts one after another would pass.)"""
    wf = load_workflow(ROOT / "workflows" / "quickstart.yaml")
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    report = outcome.report()
    assert outcome.status == "ok"
    analysts = [n for n in report["nodes"] if n["id"].startswith("notes[")]
    assert len(analysts) == 3
    assert max(n["start_s"] for n in analysts) < min(n["end_s"] for n in analysts)
    first, analyst, *rest = report["critical_path"]["nodes"]
    assert (first, rest) == ("notes", ["digest"]) and analyst in {n["id"] for n in analysts}
