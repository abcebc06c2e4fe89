"""Every example in workflows/ validates, and every offline one runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.engine.plan import compile_workflow
from runner.engine.session import run_plan
from runner.spec import check_file, load_workflow
from runner.spec.inputs import resolve_inputs
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


def test_quickstart_finishes_in_under_3_seconds() -> None:
    wf = load_workflow(ROOT / "workflows" / "quickstart.yaml")
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.report()["run"]["wall_s"] < 3
