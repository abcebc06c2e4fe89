"""The garbage collector during a run: tuned only when asked (the CLI), restored afterwards, and never a host
program's frozen objects unfrozen (issue 14)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from tests.contract_tools import GC_SEEN as SEEN

pytestmark = pytest.mark.timeout(30)

WF = """\
version: 1
name: gc
stages:
  - {id: look, python: "tests.contract_tools:observe_gc"}
"""


@pytest.fixture
def plan(tmp_path: Path) -> Any:
    path = tmp_path / "wf.yaml"
    path.write_text(WF)
    SEEN.clear()
    return compile_workflow(load_workflow(path))


@pytest.fixture
def host_gc() -> Iterator[None]:
    """Whatever a test does to the collector is undone."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def test_a_library_run_leaves_the_collector_alone(plan: Any, host_gc: None) -> None:
    gc.set_threshold(555, 7, 9)
    outcome = run_plan(plan, {})
    assert outcome.status == "ok", outcome.error
    assert SEEN == [((555, 7, 9), 0)]
    assert gc.get_threshold() == (555, 7, 9)


def test_the_cli_run_raises_the_thresholds_and_restores_them(plan: Any, host_gc: None) -> None:
    gc.set_threshold(555, 7, 9)
    outcome = run_plan(plan, {}, tune_gc=True)
    assert outcome.status == "ok", outcome.error
    ((threshold, frozen),) = SEEN
    assert threshold == (200_000, 20, 20) and frozen > 0
    assert gc.get_threshold() == (555, 7, 9)
    assert gc.get_freeze_count() == 0  # the run's own freeze is undone


def test_objects_a_host_froze_stay_frozen(plan: Any, host_gc: None) -> None:
    marker = ["frozen by the host program"]  # a list: tracked by the collector

    def frozen(obj: object) -> bool:  # frozen objects are in no generation the collector walks
        return not any(o is obj for o in gc.get_objects())

    assert not frozen(marker)
    gc.freeze()
    assert frozen(marker)
    outcome = run_plan(plan, {}, tune_gc=True)
    assert outcome.status == "ok", outcome.error
    ((threshold, _),) = SEEN
    assert threshold[0] == 200_000  # tuned all the same
    assert frozen(marker)  # and not unfrozen by the run


def test_a_disabled_collector_stays_as_it_is(plan: Any, host_gc: None) -> None:
    gc.disable()
    gc.set_threshold(555, 7, 9)
    outcome = run_plan(plan, {}, tune_gc=True)
    assert outcome.status == "ok", outcome.error
    assert SEEN == [((555, 7, 9), 0)]
    assert not gc.isenabled() and gc.get_threshold() == (555, 7, 9)
