"""A run's ``limits:`` (issue 23, budgets): enforce stops the run within one call of a limit, with a message
naming the limit, the figure reached and the setting to raise; audit warns once per limit and finishes.
Against the loopback OpenAI server, whose request count shows how many calls were made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.report.markdown import to_markdown
from tests.conftest import assert_valid_report, run_cli
from tests.oai_server import OAIServer

# Each reply uses 5 + 3 tokens (the server's usage); at $1,000 per million tokens a call costs $0.008. A
# request bounds its reply at max_tokens 10 and its prompt ("hello": 5 characters) is estimated at
# ceil(5 / 4) + 3 tokens of framing = 5: its worst case is 15 tokens, $0.015.
WF = """\
version: 1
name: budget
models:
  m:
    provider: openai
    base_url: {url}
    model: gpt-test
    params: {{max_tokens: 10}}
    pricing: {{input: 1000, output: 1000}}
limits: {limits}
agents:
  a: {{model: m}}
stages:
  - {{id: one, agent: a, input: "hello"}}
  - {{id: two, agent: a, input: "hello"}}
  - {{id: three, agent: a, input: "hello"}}
  - {{id: four, agent: a, input: "hello"}}
"""


def resumed_from(tmp_path: Path) -> str:
    """The run folder a budget's stop names: every ``runner run`` keeps a checkpoint there (issue 23)."""
    (folder,) = (tmp_path / "r" / "runs").iterdir()
    return f"r/runs/{folder.name}"


def _run(tmp_path: Path, server: OAIServer, limits: str, text: str = WF) -> tuple[Any, dict[str, Any]]:
    wf = tmp_path / "wf.yaml"
    wf.write_text(text.format(url=server.url, limits=limits))
    proc = run_cli("run", "wf.yaml", "--quiet", "--report-dir", "r", cwd=tmp_path)
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    return proc, report


def test_an_enforced_max_cost_stops_the_run_before_the_call_that_could_cross_it(tmp_path: Path) -> None:
    with OAIServer() as server:
        proc, report = _run(tmp_path, server, "{max_cost: 0.03}")
        requests = len(server.requests)
    # $0.016 spent after two calls; a third could reach $0.031: refused, never sent
    assert requests == 2
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    message = (
        "run stopped by limits.max_cost = 0.03: $0.016 spent, and the next model call (node 'three', model 'm') "
        "could cost up to $0.015; to finish the run, raise limits.max_cost in wf.yaml and resume it: "
        "runner run --resume " + resumed_from(tmp_path)
    )
    assert proc.stderr.splitlines()[-1] == f"runner: error: {message}"
    run = report["run"]
    assert run["status"] == "failed" and run["error"] == message
    assert run["limits"] == {
        "mode": "enforce",
        "settings": {"max_cost": 0.03},
        "stopped_by": {"limit": "max_cost", "setting": 0.03, "reached": 0.016},
        "warnings": [],
    }
    assert report["totals"]["cost_usd"] == pytest.approx(0.016)
    assert report["costs"]["agents"] == {"a": {"calls": 3, "cost_usd": 0.016, "unpriced_calls": 0}}
    assert report["costs"]["stages"]["one"] == {"calls": 1, "cost_usd": 0.008, "unpriced_calls": 0}
    markdown = to_markdown(report)
    section = markdown[markdown.index("## Cost, limits and fallbacks") : markdown.index("## Nodes")]
    assert section.splitlines()[2:8] == [
        "- limits (enforce): max_cost 0.03",
        "- stopped by `max_cost` at 0.016 (limit 0.03)",
        "",
        "| agent | calls | cost | unpriced calls |",
        "| --- | ---: | ---: | ---: |",
        "| `a` | 3 | $0.0160 | 0 |",
    ]


def test_an_enforced_max_model_calls_makes_exactly_that_many_requests(tmp_path: Path) -> None:
    with OAIServer() as server:
        proc, report = _run(tmp_path, server, "{max_model_calls: 3}")
        requests = len(server.requests)
    assert requests == 3
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "runner: error: run stopped by limits.max_model_calls = 3: 3 model calls made; to finish the run, "
        "raise limits.max_model_calls in wf.yaml and resume it: runner run --resume " + resumed_from(tmp_path)
    )
    assert report["run"]["limits"]["stopped_by"] == {"limit": "max_model_calls", "setting": 3, "reached": 3}


def test_max_tokens_counts_the_prompt_estimate_without_an_output_bound(tmp_path: Path) -> None:
    # without params.max_tokens a call's worst case is its prompt's estimate (5): 8 + 8 + 5 > 20 refuses the third
    with OAIServer() as server:
        proc, report = _run(tmp_path, server, "{max_tokens: 20}", WF.replace("    params: {{max_tokens: 10}}\n", ""))
        requests = len(server.requests)
    assert requests == 2
    assert proc.returncode == 1
    assert report["run"]["error"] == (
        "run stopped by limits.max_tokens = 20: 16 tokens used, and the next model call (node 'three', model 'm') "
        "could use up to 5; to finish the run, raise limits.max_tokens in wf.yaml and resume it: "
        "runner run --resume " + resumed_from(tmp_path)
    )


def test_audit_warns_once_per_limit_and_finishes(tmp_path: Path) -> None:
    with OAIServer() as server:
        proc, report = _run(tmp_path, server, "{max_cost: 0.02, max_model_calls: 2, mode: audit}")
        requests = len(server.requests)
    assert requests == 4
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("runner: warning:")]
    assert warnings == [
        "runner: warning: limits.max_cost = 0.02 crossed (audit: the run goes on): $0.008 spent, and the next "
        "model call (node 'two', model 'm') could cost up to $0.015",
        "runner: warning: limits.max_model_calls = 2 crossed (audit: the run goes on): 2 model calls made",
    ]
    limits = report["run"]["limits"]
    assert limits["mode"] == "audit" and limits["stopped_by"] is None
    assert [w["limit"] for w in limits["warnings"]] == ["max_cost", "max_model_calls"]
    assert report["run"]["status"] == "ok"


def test_calls_in_flight_finish_when_a_fanout_reaches_the_limit(tmp_path: Path) -> None:
    fanout = WF.split("stages:\n")[0] + (
        "stages:\n"
        "  - id: many\n"
        '    input: "hello {{{{ vars.n }}}}"\n'
        "    fanout: {{for_each: '{{{{ [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }}}}', as: n, agent: a, max_concurrency: 3}}\n"
    )
    with OAIServer() as server:
        proc, report = _run(tmp_path, server, "{max_model_calls: 4}", fanout)
        requests = len(server.requests)
    assert requests == 4
    assert proc.returncode == 1
    ok = [n for n in report["nodes"] if n["kind"] == "agent" and n["status"] == "ok"]
    assert len(ok) == 4  # each admitted call finished and was counted, none cut off by the refusal
    (stage,) = report["costs"]["stages"].items()  # the branches under their fan-out's id
    assert stage[0] == "many" and stage[1]["cost_usd"] == 0.032 and stage[1]["calls"] >= 5  # 4 answered, refused
    assert report["run"]["limits"]["stopped_by"]["limit"] == "max_model_calls"


def test_max_duration_refuses_calls_after_it(tmp_path: Path) -> None:
    with OAIServer() as server:
        proc, report = _run(tmp_path, server, "{max_duration: 0.000001}")
        requests = len(server.requests)
    assert requests == 0
    assert proc.returncode == 1
    assert report["run"]["error"].startswith("run stopped by limits.max_duration = 1e-06: ")
    assert report["run"]["error"].endswith(
        " s elapsed; to finish the run, raise limits.max_duration in wf.yaml and resume it: "
        "runner run --resume " + resumed_from(tmp_path)
    )


@pytest.mark.parametrize(
    ("limits", "column", "problem"),
    [
        ("{max_cost: -1}", 20, "limits.max_cost: must be > 0, got -1 [schema]"),
        ("{max_model_calls: 2.5}", 27, "limits.max_model_calls: expected an integer, got a number [schema]"),
        ("{mode: strict}", 16, "limits.mode: 'strict' is not one of enforce, audit [schema]"),
        ("{max_money: 3}", 10, "unknown key 'max_money' in limits [schema]"),
    ],
)
def test_bad_limits_are_located_errors(tmp_path: Path, limits: str, column: int, problem: str) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.format(url="http://127.0.0.1:9/v1", limits=limits))
    proc = run_cli("validate", "wf.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    line = WF.splitlines().index("limits: {limits}") + 1
    assert proc.stdout.splitlines()[0] == f"wf.yaml:{line}:{column}: error: {problem}"


DATASET_WF = """\
version: 1
name: rows
inputs:
  text: {{type: string}}
models:
  m: {{provider: scripted, reply: "{{{{ input }}}}!"}}
limits: {limits}
agents:
  a: {{model: m}}
stages:
  - {{id: first, agent: a, input: "{{{{ inputs.text }}}}"}}
  - {{id: second, agent: a, input: "{{{{ prev.content }}}}"}}
"""


@pytest.mark.parametrize(("limit", "ok"), [(2, True), (1, False)])
def test_a_dataset_batch_keeps_the_limits_per_row(tmp_path: Path, limit: int, ok: bool) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(DATASET_WF.format(limits=f"{{max_model_calls: {limit}}}"))
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    proc = run_cli("run", "wf.yaml", "--dataset", "d.jsonl", "--report-dir", "r", "--concurrency", "1", cwd=tmp_path)
    (folder,) = (tmp_path / "r" / "runs").iterdir()
    got = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len(got) == 3
    if ok:  # two calls a row, six in the batch: each row has a budget of its own
        assert proc.returncode == 0, proc.stderr
        assert {g["status"] for g in got} == {"ok"}
    else:
        assert proc.returncode == 1
        assert {g["error"] for g in got} == {
            "run stopped by limits.max_model_calls = 1: 1 model call made; to finish the run, "
            "raise limits.max_model_calls in wf.yaml and run it again"
        }


def test_max_cost_without_a_priced_model_is_a_located_error(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    text = WF.format(url="http://127.0.0.1:9/v1", limits="{max_cost: 1}")
    wf.write_text(text.replace("    pricing: {input: 1000, output: 1000}\n", ""))
    proc = run_cli("validate", "wf.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        "wf.yaml:9:10: error: limits.max_cost is set but no model the agents use has pricing: no call would count "
        "against it [invalid-setting]"
    )


def test_a_dataset_batch_in_audit_mode_warns_once_per_limit(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(DATASET_WF.format(limits="{max_model_calls: 1, mode: audit}"))
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    proc = run_cli("run", "wf.yaml", "--dataset", "d.jsonl", "--report-dir", "r", "--concurrency", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "warning" in line] == [
        "runner: warning: row 0: limits.max_model_calls = 1 crossed (audit: the run goes on): 1 model call made"
    ]
