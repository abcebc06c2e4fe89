"""``pricing.cached_input`` (issue 23): the prompt tokens a provider read from its prompt cache
(``usage.prompt_tokens_details.cached_tokens``, streamed or not) are priced apart, in the run report (per model,
agent and stage), a batch's report and a budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runner
from tests.conftest import assert_valid_report
from tests.oai_server import OAIServer, Plan

USAGE = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 800}}


def workflow(url: str, stream: bool, pricing: str) -> str:
    return f"""\
version: 1
name: cached
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: {str(stream).lower()}
    retry: {{max_attempts: 1}}
    pricing: {pricing}
agents:
  a: {{model: main}}
stages:
  - {{id: one, agent: a, input: "hello"}}
  - {{id: two, agent: a, input: "again"}}
"""


@pytest.mark.parametrize("stream", [False, True])
def test_cached_prompt_tokens_cost_the_cached_price(tmp_path: Path, stream: bool) -> None:
    with OAIServer() as server:
        server.default = Plan(content="ok", tokens=["o", "k"], usage=dict(USAGE))
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, stream, "{input: 2, cached_input: 0.5, output: 8}"))
        result = runner.run(wf, run_dir=tmp_path / "run")
    assert result.status == "ok", result.error
    report = result.report
    assert_valid_report(report)
    model = report["models"]["main"]
    assert (model["tokens_in"], model["tokens_cached"], model["tokens_out"]) == (2000, 1600, 200)
    one_call = (200 * 2 + 800 * 0.5 + 100 * 8) / 1_000_000  # fresh input, cached input, output
    assert model["cost_usd"] == pytest.approx(2 * one_call, abs=1e-9)
    assert report["totals"]["cost_usd"] == pytest.approx(2 * one_call, abs=1e-9)
    assert report["costs"]["stages"]["one"]["cost_usd"] == pytest.approx(one_call, abs=1e-9)
    assert report["costs"]["agents"]["a"]["cost_usd"] == pytest.approx(2 * one_call, abs=1e-9)


def test_without_cached_input_cached_tokens_cost_the_input_price(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.default = Plan(content="ok", usage=dict(USAGE))
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, False, "{input: 2, output: 8}"))
        result = runner.run(wf, run_dir=tmp_path / "run")
    assert result.report["models"]["main"]["cost_usd"] == pytest.approx(2 * (1000 * 2 + 100 * 8) / 1e6, abs=1e-9)


def test_a_budget_and_a_batch_count_the_cached_price(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.default = Plan(content="ok", usage=dict(USAGE))
        wf = tmp_path / "wf.yaml"
        # two calls of $0.0016 fit in $0.004 only at the cached price (at the input price each is $0.0028); the
        # limit holds for the run, and for each row of a batch
        text = workflow(server.url, False, "{input: 2, cached_input: 0.5, output: 8}")
        text = text.replace("agents:", "limits: {max_cost: 0.004}\nagents:")
        text = text.replace(
            "    retry: {max_attempts: 1}\n", "    retry: {max_attempts: 1}\n    params: {max_tokens: 10}\n"
        )
        wf.write_text(text)
        result = runner.run(wf, run_dir=tmp_path / "run")
        assert result.status == "ok", result.error
        data = tmp_path / "rows.jsonl"
        data.write_text('{"x": 1}\n{"x": 2}\n')
        from tests.conftest import run_cli  # noqa: PLC0415

        got = run_cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"), "-q")
    assert got.returncode == 0, got.stderr
    (batch,) = (tmp_path / "r" / "runs").glob("*/report.json")
    assert json.loads(batch.read_text())["cost"]["usd"] == pytest.approx(4 * 0.0016, abs=1e-9)  # 2 rows, 2 calls each
