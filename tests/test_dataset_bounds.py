"""A top-level fan-out's ``max_concurrency`` holds across all the rows of a dataset batch, as the models' pools
and rate limits do (issue 17: "each stage's own bounds still hold and are shared by all rows"); a single run's
fan-out, and a nested one, bound themselves. Measured by the branches themselves: a counter of those running."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner
from tests.fanout_probe import STATE

pytestmark = [pytest.mark.timeout(60)]

WF = """\
version: 1
name: bounded
inputs:
  topic: {type: string}
stages:
  - id: fan
    input: "{{ inputs.topic }} {{ vars.item }}"
    fanout:
      for_each: [a, b, c, d, e, f]
      max_concurrency: 2
      stages:
        - {id: job, python: "tests.fanout_probe:work"}
"""


@pytest.fixture(autouse=True)
def _reset() -> None:
    STATE.update(running=0, peak=0)


def test_a_fanouts_bound_holds_across_the_rows_of_a_batch(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    rows = [{"topic": f"t{i}"} for i in range(5)]
    results = list(runner.each(str(wf), rows, concurrency=5, run_dir=tmp_path / "batch"))
    assert sorted(r.status for r in results) == ["ok"] * 5
    assert STATE["peak"] == 2  # five rows in flight, one bound of 2 for all of them (10 if each row bounded itself)


def test_a_single_run_bounds_its_own_fanout(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    result = runner.run(str(wf), {"topic": "t"}, run_dir=tmp_path / "run")
    assert result.status == "ok"
    assert STATE["peak"] == 2
