"""Fallbacks with the other failure causes and with a budget (issue 23): a refused connection is retried on the
model, then moved; a move to a fallback is a call to that model, counted against ``limits`` at its own price."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan

pytestmark = pytest.mark.timeout(60)

WF = """\
version: 1
name: fbb
models:
  primary:
    provider: openai
    base_url: {primary_url}
    model: gpt-a
    stream: false
    retry: {{max_attempts: 2, initial_delay: 0.01, max_delay: 0.01}}
    params: {{max_tokens: 10}}
    pricing: {{input: 1000, output: 1000}}
    fallback: {{models: [backup], on: [429, connect]}}
  backup:
    provider: openai
    base_url: {url}
    model: gpt-b
    stream: false
    params: {{max_tokens: 10}}
    pricing: {{input: 2000, output: 2000}}
{limits}agents:
  a: {{model: primary}}
stages:
  - {{id: one, agent: a, input: "hello"}}
  - {{id: two, agent: a, input: "hello"}}
"""


def resumed_from(tmp_path: Path) -> str:
    """The run folder a budget's stop names: every ``runner run`` keeps a checkpoint there (issue 23)."""
    (folder,) = (tmp_path / "r" / "runs").iterdir()
    return f"r/runs/{folder.name}"


def _run(tmp_path: Path, text: str) -> tuple[Any, dict[str, Any]]:
    (tmp_path / "wf.yaml").write_text(text)
    proc = run_cli("run", "wf.yaml", "--quiet", "--report-dir", "r", cwd=tmp_path)
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    return proc, report


def test_a_refused_connection_is_retried_then_moves(tmp_path: Path) -> None:
    with OAIServer() as server:
        # port 9 (discard) on the loopback: nothing listens, the connection is refused
        text = WF.format(primary_url="http://127.0.0.1:9/v1", url=server.url, limits="")
        proc, report = _run(tmp_path, text)
        asked = [r.body["model"] for r in server.requests]
    assert proc.returncode == 0, proc.stderr
    assert asked == ["gpt-b", "gpt-b"]
    assert report["fallbacks"] == {"primary": {"connect": 2}}
    assert [n["retries"] for n in report["nodes"]] == [1, 1]  # the model's own retry came first


def test_a_move_counts_against_the_budget_at_the_fallbacks_price(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan_for("gpt-a", Plan(status=429))
        # one: gpt-a (429, worst $0.015 reserved then released) then gpt-b ($0.016); two is in gpt-a's cooldown:
        # gpt-b again, whose worst case is 15 tokens at $2,000 a million, $0.03: 0.016 + 0.03 > 0.04, refused
        text = WF.format(primary_url=server.url, url=server.url, limits="limits: {max_cost: 0.04}\n")
        proc, report = _run(tmp_path, text)
        asked = [r.body["model"] for r in server.requests]
    assert asked == ["gpt-a", "gpt-b"]
    assert proc.returncode == 1
    assert report["run"]["error"] == (
        "run stopped by limits.max_cost = 0.04: $0.016 spent, and the next model call (node 'two', model 'backup') "
        "could cost up to $0.03; to finish the run, raise limits.max_cost in wf.yaml and resume it: "
        "runner run --resume " + resumed_from(tmp_path)
    )
    assert report["costs"]["agents"]["a"]["cost_usd"] == pytest.approx(0.016)
