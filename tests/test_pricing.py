"""``models.<name>.pricing``: the run report and a dataset batch's report give what the tokens cost (issue 17's
cost, the ground issue 23's budgets build on); a model without pricing is counted as unpriced, never guessed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.report.markdown import to_markdown
from runner.report.summary import format_table
from tests.conftest import assert_valid_report, run_cli

WF = """\
version: 1
name: priced
models:
  cheap:
    provider: scripted
    reply: "a reply of some forty characters, give or take"
    pricing: {input: 2.5, output: 10}
  free: {provider: scripted, reply: "ok"}
  remote:
    provider: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt-test
    pricing: {input: 1, output: 4}
agents:
  a: {model: cheap}
  b: {model: free}
stages:
  - {id: one, agent: a, input: "hello there, how are you today?"}
  - {id: two, agent: b, input: "and you?"}
"""


def test_a_run_report_prices_each_priced_model_and_counts_the_rest(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        WF.replace(
            "  remote:\n    provider: openai\n    base_url: http://127.0.0.1:9/v1\n"
            "    model: gpt-test\n    pricing: {input: 1, output: 4}\n",
            "",
        )
    )
    result = runner.run(wf, run_dir=tmp_path / "run")
    report: dict[str, Any] = result.report
    assert_valid_report(report)
    cheap = report["models"]["cheap"]
    expected = (cheap["tokens_in"] * 2.5 + cheap["tokens_out"] * 10) / 1_000_000
    assert cheap["tokens_in"] > 0 and cheap["tokens_out"] > 0
    assert cheap["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert "cost_usd" not in report["models"]["free"]  # unpriced: no figure rather than a guess
    assert report["totals"]["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert report["totals"]["unpriced_calls"] == 1
    assert f", cost ${expected:.4f} (1 unpriced calls not counted)" in format_table(report)
    assert f"| cost | ${expected:.4f} (1 unpriced calls not counted) |" in to_markdown(report)


def test_without_pricing_the_report_says_nothing_of_cost(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        WF.replace("    pricing: {input: 2.5, output: 10}\n", "").replace("    pricing: {input: 1, output: 4}\n", "")
    )
    report = runner.run(wf, run_dir=tmp_path / "run").report
    assert "cost_usd" not in report["totals"] and "unpriced_calls" not in report["totals"]
    assert "cost" not in format_table(report)


def test_an_offline_dry_run_keeps_the_remote_models_pricing(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("agent: b", "agent: c").replace("  b: {model: free}", "  c: {model: remote}"))
    proc = run_cli("run", str(wf), "--offline", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    remote = report["models"]["remote"]
    assert remote["cost_usd"] == pytest.approx((remote["tokens_in"] * 1 + remote["tokens_out"] * 4) / 1e6, abs=1e-6)
    assert report["totals"]["unpriced_calls"] == 0


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ("{input: 2.5}", "'output'"),
        ("{input: -1, output: 2}", "-1"),
        ("{input: 1, output: 2, cached: 1}", "unknown key 'cached'"),
    ],
)
def test_a_wrong_pricing_is_a_located_error(tmp_path: Path, pricing: str, message: str) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("pricing: {input: 2.5, output: 10}", f"pricing: {pricing}"))
    proc = run_cli("validate", str(wf))
    assert proc.returncode == 1
    assert f"{wf}:7:" in proc.stderr + proc.stdout
    assert message in proc.stderr + proc.stdout


def test_a_batch_report_gives_the_rows_cost(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        WF.replace(
            '  - {id: one, agent: a, input: "hello there, how are you today?"}', "  - {id: one, agent: a}"
        ).replace("stages:", "inputs:\n  text: {type: string}\nstages:")
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"row number {i}"}) + "\n" for i in range(5)))
    proc = run_cli("run", str(wf), "--dataset", str(rows), "-q", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "r" / "runs").iterdir()
    doc = json.loads((folder / "report.json").read_text())
    assert doc["cost"]["unpriced_calls"] == 5  # agent b, once a row
    assert doc["cost"]["usd"] > 0
    assert (
        f"Cost: ${doc['cost']['usd']:.4f} (5 calls on models without pricing not counted)."
        in (folder / "report.md").read_text()
    )
