"""``variants:`` side by side and ``runner eval diff`` (issue 24), run as users run them against the loopback
server: another model, other params and a prompt override over the same rows; the comparison (JSON checked against
its schema, Markdown, the terminal table) with counts computed from the labels, the rows where the variants
disagree, a variant's folder resumed as its variant; regressions between two runs and the exit code; variants
checked by ``runner validate`` at their own lines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import ROOT
from tests.oai_server import OAIServer, Plan
from tests.test_eval_runs import cli

pytestmark = pytest.mark.timeout(60)


def workflow(url: str) -> str:
    return f"""\
version: 1
name: triage
inputs:
  text: {{type: string}}
models:
  main: {{provider: openai, base_url: "{url}", model: small, stream: false, retry: {{max_attempts: 1}}}}
agents:
  classifier:
    model: main
    output: {{schema: {{type: object, required: [label], properties: {{label: {{enum: [account, billing, bug]}}}}}}}}
stages:
  - id: classify
    agent: classifier
    input: "{{{{ inputs.text }}}}"
assert:
  - {{type: equals, path: data.label, value: "{{{{ row.label }}}}", metric: label}}
threshold: 0.5
variants:
  - name: big
    description: a bigger model
    models: {{main: {{model: big}}}}
  - name: cold
    models: {{main: {{params: {{temperature: 0}}}}}}
  - name: charged
    description: every ticket read as a charge
    stages: {{classify: {{input: "{{{{ inputs.text }}}} (charge)"}}}}
"""


ROWS = [
    {"id": f"R-{i}", "text": text, "label": label}
    for i, (text, label) in enumerate(
        [
            ("double charge", "billing"),
            ("cannot log in", "account"),
            ("export crashes", "bug"),
            ("password reset", "account"),
            ("app crashes on start", "bug"),
            ("invoice charge wrong", "billing"),
        ]
    )
]


def small(text: str) -> str:
    return "billing" if "charge" in text else "account"


def big(text: str) -> str:
    return "bug" if "crash" in text else small(text)


def answer(body: dict[str, Any]) -> Plan:
    text = body["messages"][-1]["content"]
    return Plan(content=json.dumps({"label": big(text) if body["model"] == "big" else small(text)}))


def expected() -> dict[str, list[str]]:
    """Each variant's verdict per row, from the labels."""
    return {
        "base": ["pass" if small(r["text"]) == r["label"] else "fail" for r in ROWS],
        "big": ["pass" if big(r["text"]) == r["label"] else "fail" for r in ROWS],
        "cold": ["pass" if small(r["text"]) == r["label"] else "fail" for r in ROWS],
        "charged": ["pass" if r["label"] == "billing" else "fail" for r in ROWS],
    }


def setup(tmp_path: Path, url: str) -> tuple[Path, Path]:
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow(url))
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return wf, data


def test_variants_side_by_side(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> Plan:
        seen.append(body)
        return answer(body)

    with OAIServer() as server:
        server.responder = responder
        wf, data = setup(tmp_path, server.url)
        proc = cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"))
    want = expected()
    # base 4/6, big 6/6, cold 4/6, charged 2/6: below the threshold 0.5, so the eval exits 1
    assert proc.returncode == 1, proc.stderr
    assert sum(body.get("temperature") == 0 for body in seen) == len(ROWS)  # the cold variant's params were sent
    assert sum(body["model"] == "big" for body in seen) == len(ROWS)
    (top,) = (tmp_path / "r" / "runs").iterdir()
    doc = json.loads((top / "comparison.json").read_text())
    jsonschema.validate(doc, json.loads((ROOT / "schemas" / "eval-comparison.schema.json").read_text()))
    assert [v["name"] for v in doc["variants"]] == ["base", "big", "cold", "charged"]
    for v in doc["variants"]:
        verdicts = want[v["name"]]
        assert (v["rows"], v["passed"], v["failed"], v["errors"]) == (
            6,
            verdicts.count("pass"),
            verdicts.count("fail"),
            0,
        )
        assert v["met"] == (verdicts.count("pass") / 6 >= 0.5)
        assert v["folder"] == str(top / "variants" / v["name"])
        assert v["tokens"] > 0 and v["latency_p95_s"] >= v["latency_p50_s"] >= 0
        lines = [json.loads(x) for x in (top / "variants" / v["name"] / "results.jsonl").read_text().splitlines()]
        assert v["tokens"] == sum(x["tokens"]["prompt"] + x["tokens"]["completion"] for x in lines)
    assert doc["variants"][1]["description"] == "a bigger model"
    differ = [i for i in range(6) if len({want[n][i] for n in want}) > 1]
    assert [(d["index"], d["key"], d["verdicts"]) for d in doc["disagreements"]] == [
        (i, f"R-{i}", {n: want[n][i] for n in want}) for i in differ
    ]
    md = (top / "comparison.md").read_text()
    assert md.startswith(f"# Variants of triage\n\n6 rows of `{data}`; the variants disagree on {len(differ)}.\n")
    assert re.search(
        r"^\| `big` \| 100\.0% \| 6 \| 0 \| 0 \| met \| [0-9.]+ s \| [0-9.]+ s \| \d+ \| \$0\.0000 \|$", md, re.M
    )
    assert "| R-0 | pass | pass | pass | pass |" not in md  # agreeing rows are not listed
    assert "| R-2 | fail | pass | fail | fail |" in md.splitlines()
    # the terminal table: one line per variant, the disagreements named
    out = proc.stderr.splitlines()
    header = next(line for line in out if line.startswith("variant"))
    assert header.split() == [
        "variant",
        "pass",
        "rate",
        "passed",
        "failed",
        "errors",
        "thresholds",
        "p50",
        "s",
        "p95",
        "s",
        "tokens",
        "cost",
        "$",
    ]
    assert f"rows where the variants disagree: {len(differ)}" in out
    assert "  row R-2: base fail, big pass, cold fail, charged fail" in out
    assert f"comparison: {top / 'comparison.md'}" in out


def test_a_variant_folder_resumes_as_its_variant(tmp_path: Path) -> None:
    broken = {"once": True}

    def responder(body: dict[str, Any]) -> Plan:
        if body["model"] == "big" and "export" in body["messages"][-1]["content"] and broken.pop("once", False):
            return Plan(status=500, body=b'{"error": {"message": "down"}}')
        return answer(body)

    with OAIServer() as server:
        server.responder = responder
        wf, data = setup(tmp_path, server.url)
        first = cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"))
        assert first.returncode == 1
        (top,) = (tmp_path / "r" / "runs").iterdir()
        folder = top / "variants" / "big"
        before = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
        assert [x["status"] for x in before if x["key"] == "R-2"] == ["failed"]
        proc = cli("run", "--resume", str(folder), "--retry-errors", "--quiet")
    assert proc.returncode == 0, proc.stderr
    again = {
        json.loads(x)["key"]: json.loads(x)["verdict"] for x in (folder / "results.jsonl").read_text().splitlines()
    }
    assert again["R-2"] == "pass"  # the big model's answer: the workflow as written would fail it


def test_eval_diff_lists_regressions(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.responder = answer
        wf, data = setup(tmp_path, server.url)
        cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"))
    (top,) = (tmp_path / "r" / "runs").iterdir()
    base, big_, charged = (str(top / "variants" / n) for n in ("base", "big", "charged"))
    worse = cli("eval", "diff", big_, charged)
    assert worse.returncode == 1
    assert worse.stdout.splitlines() == [
        f"6 rows compared ({big_} -> {charged}): 4 regressions, 0 fixes",
        "regression: row R-1: pass -> fail",
        "  label: pass -> fail ('billing' != 'account')",
        "regression: row R-2: pass -> fail",
        "  label: pass -> fail ('billing' != 'bug')",
        "regression: row R-3: pass -> fail",
        "  label: pass -> fail ('billing' != 'account')",
        "regression: row R-4: pass -> fail",
        "  label: pass -> fail ('billing' != 'bug')",
    ]
    better = cli("eval", "diff", f"{base}/results.jsonl", big_, "--format", "json")
    assert better.returncode == 0, better.stdout
    doc = json.loads(better.stdout)
    assert (doc["compared"], doc["regressions"], doc["only_old"], doc["only_new"]) == (6, [], [], [])
    assert [(f["key"], f["old"], f["new"], f["assertions"]) for f in doc["fixes"]] == [
        ("R-2", "fail", "pass", ["label"]),
        ("R-4", "fail", "pass", ["label"]),
    ]
    missing = cli("eval", "diff", str(tmp_path / "nowhere"), base)
    assert missing.returncode == 1
    assert missing.stderr == (
        f"runner: error: {tmp_path / 'nowhere'}: no results.jsonl here; give a run folder of runner eval (or runner "
        "run --dataset) or its results.jsonl\n"
    )
    usage = cli("eval", "diff", base)
    assert usage.returncode == 2
    assert "runner eval diff: error: the following arguments are required: NEW" in usage.stderr


VALIDATED = """\
version: 1
name: v
inputs: {text: {type: string}}
models:
  m: {provider: scripted}
  other: {provider: scripted}
agents:
  a: {model: m}
stages:
  - {id: s, agent: a, input: "{{ inputs.text }}"}
assert:
  - {type: contains, value: x}
variants:
  - name: other-model
    agents: {a: {model: other}}
"""


def validate(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    wf = tmp_path / "v.yaml"
    wf.write_text(text)
    proc = cli("validate", str(wf), "--format", "json")
    doc = json.loads(proc.stdout)
    found = [f"{p['line']}:{p['column']} {p['rule']}: {p['message']}" for p in doc["problems"]]
    return proc.returncode, found


def test_validate_checks_each_variant_at_its_own_keys(tmp_path: Path) -> None:
    # a model only a variant uses is not unused
    assert validate(tmp_path, VALIDATED) == (0, [])
    bad = VALIDATED + (
        "  - name: typo\n"
        "    agents: {b: {model: other}}\n"
        "  - name: prompt\n"
        "    stages: {s: {input: '{{ inputs.txt }}'}}\n"
        "  - name: nomodel\n"
        "    agents: {a: {model: missing}}\n"
        "  - name: other-model\n"
        "    stages: {nope: {input: x}}\n"
        "  - name: params\n"
        "    models: {m: {reply: 1}}\n"
    )
    code, found = validate(tmp_path, bad)
    assert code == 1
    assert found == [
        "17:14 unknown-agent: variant 'typo': no agent 'b' to override",
        "19:29 unknown-input: variant 'prompt': inputs.txt is not declared",
        "21:25 unknown-model: variant 'nomodel': agent 'a' uses model 'missing', which is not defined",
        "22:11 invalid-setting: variant name 'other-model' is used by variants[0]",
        "23:14 unknown-stage: variant 'other-model': no stage 'nope' to override",
        "25:25 schema: variant 'params': models.m.reply: expected a string, got an integer",
    ]


def test_variants_replay_from_one_cassette(tmp_path: Path) -> None:
    tape = tmp_path / "tape"
    with OAIServer() as server:
        server.responder = answer
        wf, data = setup(tmp_path, server.url)
        recorded = cli(
            "eval", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "a"), "--record", str(tape)
        )
    assert recorded.returncode == 1, recorded.stderr  # the charged variant is below its threshold
    replayed = cli(
        "eval", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "b"), "--replay", str(tape), "--strict"
    )
    assert replayed.returncode == 1, replayed.stderr
    (a,) = (tmp_path / "a" / "runs").iterdir()
    (b,) = (tmp_path / "b" / "runs").iterdir()
    first, second = (json.loads((top / "comparison.json").read_text()) for top in (a, b))
    assert first["disagreements"] == second["disagreements"]
    assert [v["passed"] for v in first["variants"]] == [v["passed"] for v in second["variants"]] == [4, 6, 4, 2]


def test_a_comparison_resumes_each_variant_then_compares_again(tmp_path: Path) -> None:
    import shutil

    with OAIServer() as server:
        server.responder = answer
        wf, data = setup(tmp_path, server.url)
        cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"))
        (top,) = (tmp_path / "r" / "runs").iterdir()
        before = json.loads((top / "comparison.json").read_text())
        shutil.rmtree(top / "variants" / "charged")  # as if the comparison had stopped before its last variant
        (top / "comparison.json").unlink()
        proc = cli("eval", "--resume", str(top))
    assert proc.returncode == 1, proc.stderr
    after = json.loads((top / "comparison.json").read_text())
    keep = ("name", "rows", "passed", "failed", "errors", "met", "folder")
    assert [{k: v[k] for k in keep} for v in after["variants"]] == [{k: v[k] for k in keep} for v in before["variants"]]
    assert after["disagreements"] == before["disagreements"]
    lines = (top / "variants" / "big" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(ROWS)  # resumed, not run again
    assert "runner: variant charged" in proc.stderr.splitlines()


def test_eval_diff_reads_rows_in_the_datasets_order_whatever_order_they_ended_in(tmp_path: Path) -> None:
    """results.jsonl holds rows in the order they ended (a fan of rows in flight finishes out of order): the diff
    lists them in the dataset's order, so two runs of the same change print the same text."""

    def line(index: int, verdict: str) -> str:
        check = {"name": "label", "status": verdict, "reason": f"row {index} {verdict}"}
        return json.dumps({"index": index, "key": f"R-{index}", "verdict": verdict, "assertions": [check]}) + "\n"

    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(line(i, "pass") for i in (3, 1, 2, 0)), encoding="utf-8")
    new.write_text("".join(line(i, "fail") for i in (2, 0, 3, 1)), encoding="utf-8")
    proc = cli("eval", "diff", str(old), str(new))
    assert proc.returncode == 1
    assert [x for x in proc.stdout.splitlines() if x.startswith("regression:")] == [
        f"regression: row R-{i}: pass -> fail" for i in range(4)
    ]
