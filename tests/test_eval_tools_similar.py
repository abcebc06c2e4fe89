"""Tool-call and ``similar`` assertions (issue 24) in a ``runner eval`` against the loopback server: tool X called
(by the row, or by one stage) with arguments matching row columns, ``not:`` for a tool that must not be called,
and the cosine similarity of the output's and a column's embeddings through a declared embedder; verdicts computed
from the rows; the reasons said exactly; ``runner validate`` locating an undeclared tool, a parameter the tool
lacks and an undeclared embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.embeddings.hashing import HashingEmbedder
from tests.oai_server import OAIServer, Plan
from tests.test_eval_runs import cli

pytestmark = pytest.mark.timeout(60)

WORKFLOW = """\
version: 1
name: tools
inputs:
  text: {{type: string}}
models:
  m: {{provider: openai, base_url: "{url}", model: m, stream: false, retry: {{max_attempts: 1}}}}
embeddings:
  e: {{provider: hashing, dimensions: 256}}
tools:
  nap: {{function: "tests.toolbox:slow_async"}}
  boom: {{function: "tests.toolbox:boom"}}
agents:
  a: {{model: m, tools: [nap, boom]}}
stages:
  - id: answer
    agent: a
    input: "{{{{ inputs.text }}}}"
    assert:
      - {{type: tool-call, tool: nap, metric: napped}}
assert:
  - {{type: tool-call, tool: nap, arguments: {{label: "{{{{ row.label }}}}", seconds: 0}}, metric: called}}
  - {{type: tool-call, tool: boom, not: true, metric: no-boom}}
  - {{type: similar, value: "{{{{ row.expected }}}}", embedder: e, metric: close}}
"""

# text -> (the label the model passes to nap, or None: no tool call; the final answer)
MODEL = {
    "first": ("first", "the invoice was charged twice"),
    "second": ("wrong", "the password reset link expired"),
    "third": (None, "the export to pdf fails with an error"),
}
ROWS = [
    {"id": "first", "text": "first", "label": "first", "expected": "the invoice was charged twice"},
    {"id": "second", "text": "second", "label": "second", "expected": "the password reset link expired"},
    {"id": "third", "text": "third", "label": "third", "expected": "quarterly revenue grew in every region"},
]


def responder(body: dict[str, Any]) -> Plan:
    messages = body["messages"]
    text = next(m["content"] for m in messages if m["role"] == "user")
    label, answer = MODEL[text]
    if label is not None and not any(m["role"] == "tool" for m in messages):
        args = json.dumps({"seconds": 0, "label": label})
        call = {"id": "c1", "type": "function", "function": {"name": "nap", "arguments": args}}
        return Plan(content="", tool_calls=[call], finish_reason="tool_calls")
    return Plan(content=answer)


def cosine(a: str, b: str) -> float:
    x, y = HashingEmbedder(256).embed_sync([a, b]).astype(np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_tool_call_and_similar_assertions(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with OAIServer() as server:
        server.responder = responder
        wf.write_text(WORKFLOW.format(url=server.url))
        proc = cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1, proc.stderr  # rows second and third fail
    (folder,) = (tmp_path / "r" / "runs").iterdir()
    lines = {json.loads(x)["key"]: json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()}
    got = {key: {v["name"]: (v["status"], v["reason"]) for v in line["assertions"]} for key, line in lines.items()}
    assert got["first"]["called"] == (
        "pass",
        'nap called 1 time; call 1 has {"label": "first", "seconds": 0}',
    )
    assert got["second"]["called"] == (
        "fail",
        'nap called 1 time, none with arguments {"label": "second", "seconds": 0} (call 1: label is \'wrong\', '
        "expected 'second')",
    )
    assert got["third"]["called"] == ("fail", "nap was not called (no tool was called)")
    assert got["first"]["napped"] == ("pass", "nap called 1 time by stage 'answer'")
    assert got["third"]["napped"] == ("fail", "nap was not called by stage 'answer' (no tool was called)")
    assert {got[k]["no-boom"] for k in got} == {
        ("pass", "not: boom was not called (tools called: nap)"),
        ("pass", "not: boom was not called (no tool was called)"),
    }
    for row in ROWS:
        similarity = cosine(MODEL[row["text"]][1], row["expected"])
        status, reason = got[row["id"]]["close"]
        assert (status, reason) == (
            "pass" if similarity >= 0.75 else "fail",
            f"cosine similarity {similarity:.4f} {'>=' if similarity >= 0.75 else '<'} 0.75",
        )
        score = next(v["score"] for v in lines[row["id"]]["assertions"] if v["name"] == "close")
        assert score == pytest.approx(max(similarity, 0.0), abs=1e-6)
    assert got["first"]["close"][0] == "pass" and got["third"]["close"][0] == "fail"


def test_a_single_run_checks_tool_calls_too(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    with OAIServer() as server:
        server.responder = responder
        wf.write_text(
            WORKFLOW.format(url=server.url)
            .replace("row.label", "inputs.text")
            .replace("row.expected", "'the invoice was charged twice'")
        )
        proc = cli("run", str(wf), "--set", "text=first", "--quiet", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert 'runner: called: pass (nap called 1 time; call 1 has {"label": "first", "seconds": 0})' in (
        proc.stderr.splitlines()
    )
    assert "runner: assertions: 4 of 4 passed" in proc.stderr.splitlines()


def test_validate_locates_tools_parameters_and_embedders(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    text = WORKFLOW.format(url="http://127.0.0.1:9/v1")
    text = text.replace(
        "  nap: {function",
        "  nap: {parameters: {type: object, properties: {seconds: {type: number}, label: {type: string}}}, function",
    )
    text = text.replace("tool: boom, not", "tool: bom, not").replace('label: "{{ row.label }}"', "lable: x")
    text = text.replace("embedder: e,", "embedder: f,").replace("{{ row.expected }}", "{{ inputs.txt }}")
    wf.write_text(text)
    proc = cli("validate", str(wf), "--format", "json")
    assert proc.returncode == 1
    found = [f"{p['line']}:{p['column']} {p['rule']}: {p['message']}" for p in json.loads(proc.stdout)["problems"]]
    assert found == [
        "21:46 invalid-setting: assert: tool 'nap' has no parameter 'lable'",
        "22:29 unknown-tool: assert: tool-call names tool 'bom', which is not defined",
        "23:32 unknown-input: input 'txt' is not declared",
        "23:58 unknown-embedding: assert: similar uses embedding 'f', which is not defined",
    ]
