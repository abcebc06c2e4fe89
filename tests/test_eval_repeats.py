"""``repeat: N`` (issue 24) against the loopback server: each row run N times, the majority verdict per assertion,
pass@k, the runs that passed, and how much the verdict varies across runs, in results.jsonl, report.json (checked
against its schema) and report.md; ``runner validate`` refuses a repeat without assertions, located."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.evals.repeats import majority
from tests.conftest import ROOT
from tests.oai_server import OAIServer, Plan
from tests.test_eval_runs import cli

pytestmark = pytest.mark.timeout(60)

WORKFLOW = """\
version: 1
name: repeats
inputs:
  text: {{type: string}}
models:
  main: {{provider: openai, base_url: "{url}", model: m, stream: false, retry: {{max_attempts: 1}}}}
agents:
  classifier: {{model: main}}
stages:
  - id: classify
    agent: classifier
    input: "{{{{ inputs.text }}}}"
assert:
  - {{type: equals, value: "{{{{ row.label }}}}", metric: label}}
  - {{type: tokens, max: 1000}}
repeat: 3
threshold: 0.5
"""

# what the server answers on each run of a row: the label is right on some runs only
ANSWERS = {
    "steady": ["billing", "billing", "billing"],
    "flips": ["billing", "account", "billing"],  # 2 of 3 right: a majority pass that varies
    "rare": ["account", "billing", "account"],  # 1 of 3 right: pass@3, a majority fail
    "never": ["account", "account", "account"],
}


def test_repeats_give_majority_verdicts_and_pass_at_k(tmp_path: Path) -> None:
    asked: Counter[str] = Counter()

    def responder(body: dict[str, Any]) -> Plan:
        text = body["messages"][-1]["content"]
        answer = ANSWERS[text][asked[text]]
        asked[text] += 1
        return Plan(content=answer)

    wf = tmp_path / "wf.yaml"
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"id": t, "text": t, "label": "billing"}) + "\n" for t in ANSWERS))
    with OAIServer() as server:
        server.responder = responder
        wf.write_text(WORKFLOW.format(url=server.url))
        proc = cli(
            "eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"),
            "--record", str(tmp_path / "tape"),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # 2 of 4 rows pass by majority: the threshold 0.5 is met
    assert asked == dict.fromkeys(ANSWERS, 3)
    (folder,) = (tmp_path / "r" / "runs").iterdir()
    lines = {json.loads(x)["key"]: json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()}
    for text, answers in ANSWERS.items():
        line = lines[text]
        statuses = ["pass" if a == "billing" else "fail" for a in answers]
        label = line["assertions"][0]
        assert label["repeats"] == statuses
        assert label["status"] == majority(statuses) == ("pass" if statuses.count("pass") >= 2 else "fail")
        assert label["score"] == round(statuses.count("pass") / 3, 6)
        assert label["reason"].startswith(f"{statuses.count('pass')} of 3 runs passed; ")
        assert line["assertions"][1]["repeats"] == ["pass"] * 3  # each run's tokens against the limit, not the sum
        assert line["repeats"] == {
            "n": 3,
            "passed": statuses.count("pass"),
            "pass_at_k": "pass" in statuses,
            "verdicts": statuses,
            "agreement": round(statuses.count(label["status"]) / 3, 6),
        }
        assert line["verdict"] == label["status"]
    report = json.loads((folder / "report.json").read_text())
    jsonschema.validate(report, json.loads((ROOT / "schemas" / "batch-report.schema.json").read_text()))
    evals = report["evals"]
    assert (evals["passed"], evals["failed"], evals["errors"]) == (2, 2, 0)
    assert evals["repeats"] == {
        "n": 3,
        "rows": 4,
        "pass_at_k": 3,
        "pass_at_k_rate": 0.75,
        "all_passed": 1,
        "flaky_rows": 2,
        "mean_agreement": round((1 + 2 / 3 + 2 / 3 + 1) / 4, 6),
    }
    assert [a["flaky"] for a in evals["assertions"]] == [2, 0]
    md = (folder / "report.md").read_text()
    assert (
        "Repeats: each row ran 3 times; verdicts by majority. pass@3: 3 of 4 rows (75.0%); every run passed: 1; the "
        "verdict changed across runs in 2 rows (mean agreement 83.3%)."
    ) in md.splitlines()
    assert "Varying across runs: `label` in 2 rows." in md.splitlines()
    # replayed (the server is gone): each run of a row gets its own recorded answer, in order
    again = cli(
        "eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "b"),
        "--replay", str(tmp_path / "tape"), "--strict",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    (replayed,) = (tmp_path / "b" / "runs").iterdir()
    same = {json.loads(x)["key"]: json.loads(x) for x in (replayed / "results.jsonl").read_text().splitlines()}
    assert {k: (v["assertions"], v["repeats"]) for k, v in same.items()} == {
        k: (v["assertions"], v["repeats"]) for k, v in lines.items()
    }


def test_majority_ties_are_not_a_pass() -> None:
    assert majority(["pass", "fail"]) == "fail"
    assert majority(["pass", "error"]) == "error"
    assert majority(["error", "fail", "pass", "pass"]) == "pass"
    assert majority(["fail", "error"]) == "fail"


def test_repeat_needs_assertions(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "version: 1\nname: r\nmodels: {m: {provider: scripted}}\nagents: {a: {model: m}}\n"
        "stages: [{id: s, agent: a}]\nrepeat: 3\n"
    )
    proc = cli("validate", str(wf))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{wf}:6:1: error: the top level: repeat runs each dataset row again for its assertions' verdicts, and the "
        "workflow has no assert: list [invalid-setting]"
    )
    wf.write_text(wf.read_text().replace("repeat: 3", "repeat: 0"))
    assert cli("validate", str(wf)).returncode == 1
