"""A run waiting at a human gate goes on from its checkpoint (issue 23, items 1 and 2 together): without a terminal
it exits 75 naming ``runner run --resume RUN --approve STAGE``; that command runs only the gate and what follows,
the stages before it restored from the checkpoint (the loopback server counts the requests)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.oai_server import OAIServer, Plan
from tests.test_checkpoint_resume import latest_report

pytestmark = pytest.mark.timeout(90)


def gated(url: str) -> str:
    return f"""\
version: 1
name: gated
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: false
    retry: {{max_attempts: 1}}
agents:
  writer: {{model: main}}
stages:
  - {{id: draft, agent: writer, input: "uvloop"}}
  - id: review
    approve: {{message: "Publish {{{{ stages.draft.content }}}}?", show: [draft]}}
  - id: pick
    ask:
      question: "Which channel?"
      schema: {{type: object, properties: {{channel: {{enum: [blog, mail]}}}}, required: [channel]}}
  - {{id: publish, agent: writer, input: "{{{{ stages.pick.data.channel }}}}: {{{{ stages.review.content }}}}"}}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, stdin=subprocess.DEVNULL)  # no terminal: a gate with no decision waits


def test_a_waiting_gate_resumes_from_the_checkpoint_with_approve_then_answer(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (tmp_path / "answer.json").write_text('{"channel": "blog"}', encoding="utf-8")
    with OAIServer() as server:
        server.default = Plan(content="a note")
        wf = tmp_path / "gated.yaml"
        wf.write_text(gated(server.url), encoding="utf-8")

        first = cli("run", str(wf), "--report-dir", str(reports), "-q")
        assert first.returncode == 75, first.stderr
        match = re.search(r"^runner: to continue: runner run --resume (\S+) --approve review$", first.stderr, re.M)
        assert match is not None, first.stderr
        folder = match.group(1)
        assert len(server.requests) == 1  # draft

        # approved: the run goes on to the ask gate, and waits there
        second = cli("run", "--resume", folder, "--approve", "review", "-q")
        assert second.returncode == 75, second.stderr
        assert f"runner: to continue: runner run --resume {folder} --answer pick=@answer.json" in second.stderr
        assert len(server.requests) == 1  # draft was not asked again
        report = latest_report(reports)
        assert report["run"]["status"] == "waiting"
        assert report["run"]["resumed"]["restored_nodes"] == 1
        assert {n["id"]: n.get("from_checkpoint", False) for n in report["nodes"]}["draft"] is True

        # answered: the run ends; only the last stage asked the model
        third = cli("run", "--resume", folder, "--answer", f"pick=@{tmp_path / 'answer.json'}", "-q")
        assert third.returncode == 0, third.stderr
        assert third.stdout == "a note\n"
        assert [r.body["messages"][-1]["content"] for r in server.requests] == ["uvloop", "blog: a note"]
        assert latest_report(reports)["run"]["status"] == "ok"

        # a finished run says so
        again = cli("run", "--resume", folder)
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == 2


def test_gate_flags_with_a_batchs_resume_are_a_usage_error(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "ledger.sqlite").write_bytes(b"")
    got = cli("run", "--resume", str(batch), "--approve", "review")
    assert (got.returncode, got.stderr) == (
        2,
        "runner: error: --approve is for a single run's --resume, not a batch's: its rows have no human gates to "
        "decide\n",
    )
